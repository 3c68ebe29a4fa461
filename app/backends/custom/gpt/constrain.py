"""Structured outputs for our model: its next token masked, step by step, to what a JSON schema
allows (llguidance's matcher), so even a tiny model's reply parses and validates.

A string, an array or an object the schema leaves open is bounded here (`MAX_STRING_CHARS`,
`MAX_ITEMS`; an object with named properties has no others): a small model rarely chooses to
close one, and a reply cut by `max_tokens` is no JSON at all. A top-level `intent` string that
the label fits is the intent the model decided; JSON with no schema is `ANY_OBJECT`, the intent
and a reply."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import llguidance

from app.backends.grammar import TokenMask, checked_grammar, compiled, with_intent

MAX_STRING_CHARS = 64
# `response_format: json_object` asks for any object: this one says what the model decided
ANY_OBJECT = {
    "type": "object",
    "properties": {"intent": {"type": "string"}, "reply": {"type": "string"}},
    "required": ["intent", "reply"],
    "additionalProperties": False,
}
MAX_ITEMS = 8
_KEY = "^[A-Za-z0-9_]{1,16}$"  # the name of a key no schema names
_SUBSCHEMAS = ("items", "additionalProperties", "not", "if", "then", "else", "contains")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")


class JsonGrammar:
    """A JSON schema, bounded, for one tokenizer: `mask(label)` starts a reply."""

    def __init__(self, tokenizer: llguidance.LLTokenizer, schema: Mapping[str, Any]):
        self._tokenizer = tokenizer
        self._schema = bounded(schema)
        checked_grammar(self._schema, tokenizer)

    def mask(self, label: str | None) -> TokenMask:
        """The mask of one reply, with `intent` the decided `label` where the schema asks."""
        schema = with_intent(self._schema, label) if label is not None else self._schema
        return TokenMask(self._tokenizer, compiled(schema))


def tokenizer_for(tokenizer_json: str, vocab_size: int, eos: int) -> llguidance.LLTokenizer:
    """The grammar library's view of our tokenizer (its JSON, as `tokenizers` saves it)."""
    return llguidance.LLTokenizer(tokenizer_json, n_vocab=vocab_size, eos_token=eos)


def bounded(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The schema with every string, array and object it leaves open bounded; what it
    accepts is a subset of what the original accepts."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _SUBSCHEMAS and isinstance(value, Mapping):
            out[key] = bounded(value)
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [bounded(v) if isinstance(v, Mapping) else v for v in value]
        elif key in _SCHEMA_MAPS and isinstance(value, Mapping):
            out[key] = {k: bounded(v) if isinstance(v, Mapping) else v for k, v in value.items()}
        else:
            out[key] = value
    kinds = out.get("type")
    kinds = set(kinds) if isinstance(kinds, list) else {kinds}
    free = not any(k in out for k in ("enum", "const", "pattern", "format"))
    if "string" in kinds and free and "maxLength" not in out:
        out["maxLength"] = max(MAX_STRING_CHARS, out.get("minLength", 0))
    if "array" in kinds and "maxItems" not in out:
        out["maxItems"] = max(MAX_ITEMS, out.get("minItems", 0))
    if "object" in kinds:
        _close(out)
    return out


def _close(schema: dict[str, Any]) -> None:
    """An object's keys bounded: named properties only where it names some, else at most
    MAX_ITEMS keys of a bounded name (a model writes a key as freely as a string)."""
    extra = schema.get("additionalProperties", True)
    if extra is False or "patternProperties" in schema:
        return
    if schema.get("properties"):
        schema["additionalProperties"] = False
        return
    schema["patternProperties"] = {_KEY: extra if isinstance(extra, Mapping) else {}}
    schema["additionalProperties"] = False
    schema.setdefault("maxProperties", max(MAX_ITEMS, schema.get("minProperties", 0)))
