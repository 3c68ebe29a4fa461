"""Structured outputs for our model: its next token masked, step by step, to what a JSON schema
allows (llguidance's matcher), so even a tiny model's reply parses and validates.

A string, an array or an object the schema leaves open is bounded here (`MAX_STRING_CHARS`,
`MAX_ITEMS`; an object with named properties has no others): a small model rarely chooses to
close one, and a reply cut by `max_tokens` is no JSON at all. A top-level `intent` string that
the label fits is the intent the model decided; JSON with no schema is `ANY_OBJECT`, the intent
and a reply."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import llguidance
import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from llguidance._lib import JsonCompileOptions

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
INTENT_FIELD = "intent"
# Compact JSON: no whitespace between tokens, which a small model could otherwise spend its
# whole budget on.
_COMPACT: JsonCompileOptions = {"whitespace_flexible": False}
_SUBSCHEMAS = ("items", "additionalProperties", "not", "if", "then", "else", "contains")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")


class SchemaRefused(ValueError):
    """A schema the grammar library cannot compile: its message says why."""


class JsonGrammar:
    """A JSON schema, bounded, for one tokenizer: `mask(label)` starts a reply."""

    def __init__(self, tokenizer: llguidance.LLTokenizer, schema: Mapping[str, Any]):
        self._tokenizer = tokenizer
        self._schema = bounded(schema)
        grammar = _compiled(self._schema)
        failed, problems = llguidance.LLMatcher.validate_grammar_with_warnings(grammar, tokenizer)
        if failed:
            raise SchemaRefused(problems[0] if problems else "the schema does not compile")

    def mask(self, label: str | None) -> TokenMask:
        """The mask of one reply, with `intent` the decided `label` where the schema asks."""
        schema = with_intent(self._schema, label) if label is not None else self._schema
        matcher = llguidance.LLMatcher(self._tokenizer, _compiled(schema), log_level=0)
        if matcher.is_error():
            raise SchemaRefused(matcher.get_error())
        return TokenMask(matcher, self._tokenizer.vocab_size)


class TokenMask:
    """Which tokens may come next; `take` moves it on by the token chosen."""

    def __init__(self, matcher: llguidance.LLMatcher, vocab_size: int):
        self._matcher = matcher
        self._vocab_size = vocab_size

    def allowed(self) -> Tensor:
        """A bool per token of the vocabulary: True where the grammar allows it."""
        words = np.frombuffer(self._matcher.compute_bitmask(), dtype=np.uint8)
        bits = np.unpackbits(words, bitorder="little")[: self._vocab_size]
        return torch.from_numpy(bits.astype(np.bool_))

    def take(self, token: int) -> None:
        """A token the grammar refuses puts it in error, and it then allows none."""
        self._matcher.consume_token(token)


def tokenizer_for(tokenizer_json: str, vocab_size: int, eos: int) -> llguidance.LLTokenizer:
    """The grammar library's view of our tokenizer (its JSON, as `tokenizers` saves it)."""
    return llguidance.LLTokenizer(tokenizer_json, n_vocab=vocab_size, eos_token=eos)


def bounded(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The schema with a length on every string and array it leaves unbounded; what it
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


def with_intent(schema: Mapping[str, Any], label: str) -> Mapping[str, Any]:
    """The schema with its top-level `intent` fixed to the decided label, where the schema
    asks for a string the label is one of (a free string, or an enum or pattern it fits)."""
    field = schema.get("properties", {}).get(INTENT_FIELD)
    if isinstance(field, Mapping) and "$ref" in field:  # a pydantic Enum: its definition
        name = str(field["$ref"]).rsplit("/", 1)[-1]
        field = schema.get("$defs", {}).get(name)
    if not isinstance(field, Mapping) or not _admits(field, label):
        return schema
    properties = {**schema["properties"], INTENT_FIELD: {"const": label}}
    return {**schema, "properties": properties}


def _admits(field: Mapping[str, Any], label: str) -> bool:
    """Whether a string schema of the common keywords takes `label` (anything else: no)."""
    known = {"type", "enum", "pattern", "minLength", "maxLength", "title", "description"}
    if not set(field) <= known or field.get("type", "string") != "string":
        return False
    if "enum" in field and label not in field["enum"]:
        return False
    try:
        if "pattern" in field and re.search(str(field["pattern"]), label) is None:
            return False
    except re.error:
        return False
    return bool(field.get("minLength", 0) <= len(label) <= field.get("maxLength", len(label)))


def _compiled(schema: Mapping[str, Any]) -> str:
    return llguidance.LLMatcher.grammar_from_json_schema(json.dumps(schema), overrides=_COMPACT)
