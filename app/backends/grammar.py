"""JSON-schema grammars for any of our tokenizers, through llguidance: whether a schema
compiles, the mask of allowed next tokens as a reply is decoded, and the decided intent written
into a schema that asks for one. The custom model and the qlora engines share it."""

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

INTENT_FIELD = "intent"
# Compact JSON: no white space between tokens, which a small model could spend its budget on.
_COMPACT: JsonCompileOptions = {"whitespace_flexible": False}


class SchemaRefused(ValueError):
    """A schema the grammar library cannot compile: its message says why."""


def checked_grammar(schema: Mapping[str, Any], tokenizer: llguidance.LLTokenizer | None) -> str:
    """The schema's grammar, or SchemaRefused saying why it does not compile."""
    grammar = compiled(schema)
    failed, problems = llguidance.LLMatcher.validate_grammar_with_warnings(grammar, tokenizer)
    if failed:
        raise SchemaRefused(problems[0] if problems else "the schema does not compile")
    return grammar


def compiled(schema: Mapping[str, Any]) -> str:
    return llguidance.LLMatcher.grammar_from_json_schema(json.dumps(schema), overrides=_COMPACT)


def call_or_text(call: Mapping[str, Any]) -> str:
    """A Lark grammar: a tool call, JSON of `call` (compact), or prose, which a call's `{`
    cannot begin. vLLM's guidance backend and `lark_compiled` read it."""
    schema = {**call, "x-guidance": {"whitespace_flexible": False}}
    return f"start: call | TEXT\ncall: %json {json.dumps(schema)}\nTEXT: /[^{{](?s:.)*/\n"


def lark_compiled(lark: str) -> str:
    return llguidance.LLMatcher.grammar_from_lark(lark)


class TokenMask:
    """Which tokens may come next under a grammar (`compiled` or `lark_compiled`); `take`
    moves it on by the token chosen."""

    def __init__(self, tokenizer: llguidance.LLTokenizer, grammar: str):
        self._matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
        if self._matcher.is_error():
            raise SchemaRefused(self._matcher.get_error())
        self._vocab_size = tokenizer.vocab_size

    def allowed(self) -> Tensor:
        """A bool per token of the vocabulary: True where the grammar allows it."""
        words = np.frombuffer(self._matcher.compute_bitmask(), dtype=np.uint8)
        bits = np.unpackbits(words, bitorder="little")[: self._vocab_size]
        return torch.from_numpy(bits.astype(np.bool_))

    def take(self, token: int) -> None:
        """A token the grammar refuses puts it in error, and it then allows none."""
        self._matcher.consume_token(token)


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
