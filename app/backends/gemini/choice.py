"""Gemini answers with a structured choice: a JSON object, constrained by Google to the schema
below, naming one of the service's labels (or `out_of_scope`), the confidence the model states
for it (uncalibrated: the model's own word, not a probability we measured) and the reply. It
is read as it streams: the intent line goes out once the choice is made, then the reply as it
grows. Asked for structured output, its reply is itself JSON (the caller's schema, in the
same object): it goes out as its own JSON text."""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import from_json

from app.backends.gemini.upstream import malformed
from app.backends.protocol import Piece, ResponseFormat
from app.backends.stops import StopScanner
from app.banking.intents import IntentSet, format_answer
from app.errors import InvalidRequest

# The object's own tokens ({"intent": ..., "confidence": ..., "reply": "...}), not the reply's:
# added to the caller's max_tokens so that the reply still has them all.
CHOICE_TOKENS = 32
_FIELDS = ("intent", "confidence", "reply")


class Choice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    intent: str
    confidence: float = Field(ge=0, le=1)
    reply: str


class StructuredChoice(Choice):
    reply: Any  # held to the caller's schema by Google


def structured_schema(choice: Mapping[str, Any], reply: Mapping[str, Any]) -> dict[str, Any]:
    """The choice's schema with `reply` the caller's schema; the caller's definitions move to
    the top, where their `#/$defs/...` and `#/definitions/...` references point. A reference
    to anything else of the caller's schema would point into the choice: refused."""
    reply = dict(reply)
    moved: dict[str, Any] = {k: reply.pop(k) for k in ("$defs", "definitions") if k in reply}
    for ref in _references(reply) + _references(moved):
        if not ref.startswith(("#/$defs/", "#/definitions/")):
            raise ValueError(f"a $ref to {ref!r}: only references into $defs are served")
    return {**choice, "properties": {**choice["properties"], "reply": reply}, **moved}


def asked_schema(choice: dict[str, Any], shape: ResponseFormat | None) -> dict[str, Any]:
    """The schema Gemini is asked to hold its answer to: the choice's, with its reply held to
    the caller's response format when there is one (a schema it cannot carry is a 400)."""
    if shape is None:
        return choice
    try:
        return structured_schema(choice, shape.json_schema())
    except ValueError as exc:
        raise InvalidRequest.fields((["response_format"], str(exc), None)) from None


def choice_pieces(line: Piece | None, reply: str, scanner: StopScanner) -> list[Piece]:
    """The intent line whole and unscanned (the caller's stop strings cut the reply, never the
    decided intent), then the reply's text through the stop strings."""
    pieces = [line] if line is not None else []
    if reply and (kept := scanner.feed(reply)):
        pieces.append(Piece(kept))
    return pieces


def _references(schema: Any) -> list[str]:
    """Every `$ref` in a schema, at any depth."""
    if isinstance(schema, Mapping):
        found = [str(schema["$ref"])] if "$ref" in schema else []
        return found + [ref for value in schema.values() for ref in _references(value)]
    if isinstance(schema, list):
        return [ref for value in schema for ref in _references(value)]
    return []


def choice_schema(intents: IntentSet) -> dict[str, Any]:
    """The JSON Schema Gemini's answer is held to, its fields in the order they are written."""
    return {
        "type": "object",
        "properties": {
            "intent": {"type": "string", "enum": list(intents.answer_labels)},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "reply": {"type": "string"},
        },
        "required": list(_FIELDS),
        "propertyOrdering": list(_FIELDS),
    }


class ChoiceReader:
    """Gemini's streamed JSON text in; the intent line (with the stated confidence), then the
    reply's new text, out. The fields come in order, so once `reply` has begun the intent and
    the confidence are whole. What is not the object asked for is a malformed response."""

    def __init__(self, name: str, labels: Collection[str], structured: bool = False) -> None:
        self._name = name
        self._labels = labels
        self._structured = structured  # the reply is JSON, given out as its text
        self._text = ""
        self._decided = False
        self._sent = 0  # characters of the reply already given out

    def feed(self, text: str) -> tuple[Piece | None, str]:
        """The intent line once it is decided, and the reply's text that came with `text`."""
        try:
            return self._feed(text)
        except ValueError as exc:
            raise malformed(self._name, exc) from exc

    def end(self, whole: bool) -> tuple[Piece | None, str]:
        """What is left when the stream ends. A `whole` answer (one the token limit did not cut)
        must be the object the schema asks for; a cut one keeps the choice if it was made."""
        try:
            return self._end(whole)
        except ValueError as exc:
            raise malformed(self._name, exc) from exc

    def _feed(self, text: str) -> tuple[Piece | None, str]:
        self._text += text
        so_far = _object(from_json(self._text, allow_partial="trailing-strings"))
        if "reply" not in so_far:
            return None, ""
        return self._decide(so_far), self._new_reply(so_far, whole=False)

    def _end(self, whole: bool) -> tuple[Piece | None, str]:
        if whole:
            kind = StructuredChoice if self._structured else Choice
            try:
                answer = kind.model_validate(json.loads(self._text)).model_dump()
            except ValidationError as exc:
                raise ValueError(f"not the JSON object asked for: {exc}") from exc
        else:
            answer = _object(from_json(self._text or "{}", allow_partial="trailing-strings"))
            if "reply" not in answer and not {"intent", "confidence"} <= answer.keys():
                return None, ""  # cut before the choice was whole
        return self._decide(answer), self._new_reply(answer, whole)

    def _decide(self, answer: dict[str, Any]) -> Piece | None:
        if self._decided:
            return None
        intent, confidence = answer.get("intent"), answer.get("confidence")
        if intent not in self._labels:
            raise ValueError(f"not the JSON object asked for: intent {intent!r}")
        if isinstance(confidence, bool) or not isinstance(confidence, int | float):
            raise ValueError(f"not the JSON object asked for: confidence {confidence!r}")
        if not 0 <= confidence <= 1:
            raise ValueError(f"not the JSON object asked for: confidence {confidence!r}")
        self._decided = True
        return Piece(format_answer(str(intent), ""), confidence=float(confidence))

    def _new_reply(self, answer: dict[str, Any], whole: bool) -> str:
        reply = self._reply_text(whole) if self._structured else answer.get("reply", "")
        if not isinstance(reply, str):
            raise ValueError(f"not the JSON object asked for: reply {reply!r}")
        new, self._sent = reply[self._sent :], len(reply)
        return new

    def _reply_text(self, whole: bool) -> str:
        """The reply's own JSON text so far: what follows `"reply":`, less the object's end.
        Until the answer is whole, closing braces and white space at its end are held back:
        they may be the object's, not the reply's."""
        start = _REPLY_KEY.search(self._text)
        if start is None:
            return ""
        text = self._text[start.end() :].rstrip()
        if whole:
            return text.removesuffix("}").rstrip()
        return text.rstrip("} \t\r\n")


_REPLY_KEY = re.compile(r'"reply"\s*:\s*')  # the last field: intent and confidence come first


def _object(parsed: Any) -> dict[str, Any]:
    if not isinstance(parsed, dict):
        raise ValueError(f"not the JSON object asked for: {type(parsed).__name__}")
    return parsed
