"""The schema a structured reply is decoded under: bounded where it is open, the intent fixed."""

from __future__ import annotations

from typing import Any

import pytest

from app.backends.custom.gpt.constrain import MAX_ITEMS, MAX_STRING_CHARS, bounded
from app.backends.grammar import with_intent


def test_every_open_string_array_and_object_is_bounded_and_nothing_else() -> None:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "short": {"type": "string", "maxLength": 5},
            "long": {"type": "string", "minLength": 100},
            "code": {"type": "string", "pattern": "^[A-Z]{3}$"},
            "kind": {"type": "string", "enum": ["a", "b"]},
            "tags": {"type": "array", "items": {"type": ["string", "null"]}},
            "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            "ref": {"$ref": "#/$defs/Note"},
        },
        "$defs": {"Note": {"type": "object", "additionalProperties": {"type": "string"}}},
        "additionalProperties": False,
    }
    out = bounded(schema)
    props = out["properties"]
    assert props["name"]["maxLength"] == MAX_STRING_CHARS
    assert props["short"]["maxLength"] == 5
    assert props["long"]["maxLength"] == 100  # never below what the schema asks for
    assert "maxLength" not in props["code"]
    assert "maxLength" not in props["kind"]
    assert props["tags"]["maxItems"] == MAX_ITEMS
    assert props["tags"]["items"]["maxLength"] == MAX_STRING_CHARS
    assert props["either"]["anyOf"][0]["maxLength"] == MAX_STRING_CHARS
    note = out["$defs"]["Note"]  # a map: at most MAX_ITEMS keys, each of a bounded name
    assert note["maxProperties"] == MAX_ITEMS
    assert note["additionalProperties"] is False
    [(key, value)] = note["patternProperties"].items()
    assert (key, value) == (
        "^[A-Za-z0-9_]{1,16}$",
        {"type": "string", "maxLength": MAX_STRING_CHARS},
    )
    assert "maxProperties" not in out  # named properties only: they bound it
    assert out["additionalProperties"] is False
    assert schema["properties"]["name"] == {"type": "string"}  # the caller's schema untouched


@pytest.mark.parametrize(
    ("field", "fixed"),
    [
        ({"type": "string"}, True),
        ({"type": "string", "enum": ["card_arrival", "card_linking"]}, True),
        ({"type": "string", "enum": ["card_linking"]}, False),
        ({"type": "string", "pattern": "^[a-z_]+$"}, True),
        ({"type": "string", "pattern": "^[A-Z]+$"}, False),  # the caller's rule stands
        ({"type": "string", "maxLength": 5}, False),
        ({"type": "string", "format": "email"}, False),
        ({"$ref": "#/$defs/Intent"}, True),  # a pydantic Enum that names the label
        ({"type": "integer"}, False),
        (None, False),
    ],
)
def test_the_intent_is_the_decided_label_where_the_schema_asks_for_it(
    field: dict[str, Any] | None, fixed: bool
) -> None:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"reply": {"type": "string"}},
        "$defs": {"Intent": {"enum": ["card_arrival", "card_linking"], "type": "string"}},
    }
    if field is not None:
        schema["properties"]["intent"] = field
    out = with_intent(schema, "card_arrival")
    expected = {"const": "card_arrival"} if fixed else field
    assert out["properties"].get("intent") == expected
    assert out["properties"]["reply"] == {"type": "string"}
