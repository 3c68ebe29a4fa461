from __future__ import annotations

import json

import pytest

from app.banking.intents import IntentSet, IntentSplitter, parse_intent_line
from tests.helpers import BANKING77_DIR


def test_the_intent_set_holds_the_77_banking77_labels() -> None:
    intents = IntentSet.load()
    assert len(intents.labels) == 77
    assert all(i.description and i.reply for i in intents.intents.values())
    if (BANKING77_DIR / "categories.json").is_file():
        assert set(intents.labels) == set(
            json.loads((BANKING77_DIR / "categories.json").read_text())
        )


def test_system_prompt_names_every_label_and_the_format() -> None:
    prompt = IntentSet.load().system_prompt()
    assert "`intent: <label>`" in prompt
    assert all(f"- {label}: " in prompt for label in IntentSet.load().labels)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("intent: card_arrival", (True, "card_arrival")),
        ("  Intent :card_arrival  ", (True, "card_arrival")),
        ("intent: no_such_label", (True, None)),
        ("intent:", (True, None)),
        ("my card has not arrived", (False, None)),
    ],
)
def test_parse_intent_line(line: str, expected: tuple[bool, str | None]) -> None:
    assert parse_intent_line(line, IntentSet.load()) == expected


def _split(deltas: list[str]) -> tuple[str, str | None]:
    text, intent, _ = _split_all(deltas)
    return text, intent


def _split_all(deltas: list[str]) -> tuple[str, str | None, str | None]:
    splitter = IntentSplitter(IntentSet.load())
    text = "".join(splitter.feed(d) for d in deltas) + splitter.finish()
    return text, splitter.intent, splitter.handoff


@pytest.mark.parametrize(
    ("deltas", "expected"),
    [
        (
            ["int", "ent: card_", "arrival\nYour ", "card is on its way."],
            ("Your card is on its way.", "card_arrival"),
        ),
        (["intent: card_arrival"], ("", "card_arrival")),
        (["intent: unknown\nHello"], ("Hello", None)),
        (["Hello", " there"], ("Hello there", None)),
        (["in", "side the app\nsecond line"], ("inside the app\nsecond line", None)),
        (["", "\nafter an empty first line"], ("\nafter an empty first line", None)),
    ],
)
def test_splitter_separates_the_intent_line_from_the_reply(
    deltas: list[str], expected: tuple[str, str | None]
) -> None:
    assert _split(deltas) == expected


def test_splitter_streams_the_reply_once_the_first_line_is_decided() -> None:
    splitter = IntentSplitter(IntentSet.load())
    assert splitter.feed("intent: card_arrival") == ""
    assert splitter.feed("\nYour") == "Your"
    assert splitter.feed(" card") == " card"


@pytest.mark.parametrize(
    "output",
    [
        "intent: card_arrival\nYour card is on its way.",
        "intent : card_arrival\nYour card is on its way.",
        "  Intent\t:card_arrival \nYour card",
        "\u0131ntent: card_arrival\nYour card",  # a dotless i: the parser folds it to i
        "intent: unknown\nHello",
        "intent: out_of_scope\nWhatever the model wrote",
        "intent: out_of_scope",
        "intentional reply\nsecond line",
        "intent",
        "in the app",
        "\nafter an empty first line",
        "Hello there",
    ],
)
def test_splitter_gives_the_same_split_however_the_output_is_cut(output: str) -> None:
    # a whole answer is split in one piece, a stream delta by delta: both must agree
    whole = _split_all([output])
    for i in range(len(output) + 1):
        assert _split_all([output[:i], output[i:]]) == whole, i
    assert _split_all(list(output)) == whole


@pytest.mark.parametrize(
    "deltas",
    [
        ["intent: out_of_scope\nI can tell you the weather: sunny."],
        ["intent: out_of", "_scope", "\nI can", " tell you"],
        ["intent: out_of_scope"],
        ["intent: OUT_OF_SCOPE\nThe weather is fine."],  # a remote model's capitals
    ],
)
def test_an_out_of_scope_answer_is_the_approved_hand_off_whatever_the_model_wrote(
    deltas: list[str],
) -> None:
    intents = IntentSet.load()
    assert _split_all(deltas) == (intents.handoffs["out_of_scope"], None, "out_of_scope")
