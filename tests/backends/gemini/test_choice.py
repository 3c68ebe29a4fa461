"""Gemini's structured choice read as it streams: a reply that is itself JSON goes out as its
own text, whatever the chunks, and every delta is a prefix of the whole."""

from __future__ import annotations

import json

import pytest

from app.backends.gemini.choice import ChoiceReader, structured_schema
from app.backends.protocol import Piece
from app.errors import UpstreamError

REPLY = {"urgent": True, "notes": [{"channel": "app", "text": "it is on its way }"}], "x": {}}


@pytest.mark.parametrize("size", [1, 3, 7, 1000])
@pytest.mark.parametrize("indent", [None, 2])
def test_a_json_reply_streams_as_its_own_text_in_any_chunks(size: int, indent: int | None) -> None:
    answer = json.dumps(
        {"intent": "card_arrival", "confidence": 0.8, "reply": REPLY}, indent=indent
    )
    reader = ChoiceReader("gemini", {"card_arrival"}, structured=True)
    lines: list[Piece | None] = []
    text, seen = "", []
    for at in range(0, len(answer), size):
        line, delta = reader.feed(answer[at : at + size])
        lines.append(line)
        text += delta
        seen.append(text)
    line, delta = reader.end(whole=True)
    text += delta
    assert json.loads(text) == REPLY
    assert all(text.startswith(part) for part in seen)  # nothing given out is taken back
    decided = [piece for piece in lines if piece is not None]
    assert [(p.text, p.confidence) for p in decided] == [("intent: card_arrival\n", 0.8)]


def test_an_answer_that_is_no_choice_is_malformed() -> None:
    reader = ChoiceReader("gemini", {"card_arrival"}, structured=True)
    with pytest.raises(UpstreamError, match="not the JSON object asked for: confidence None"):
        reader.feed('{"intent": "card_arrival", "reply": {}}')
    whole = ChoiceReader("gemini", {"card_arrival"}, structured=True)
    whole.feed('{"intent": "card_arrival", "confidence": 1, "reply": {"a": 1')
    with pytest.raises(UpstreamError, match="malformed response: Expecting ','"):
        whole.end(whole=True)  # said to be whole, yet cut


def test_the_caller_s_definitions_move_to_the_top_where_references_point() -> None:
    choice = {"type": "object", "properties": {"intent": {"enum": ["a"]}, "reply": {}}}
    reply = {"type": "object", "properties": {"n": {"$ref": "#/$defs/N"}}, "$defs": {"N": {}}}
    schema = structured_schema(choice, reply)
    assert schema["$defs"] == {"N": {}}
    assert schema["properties"]["reply"] == {"type": "object", "properties": reply["properties"]}
    assert schema["properties"]["intent"] == {"enum": ["a"]}
