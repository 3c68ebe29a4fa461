"""How a qlora reply is sampled: as the request asks, held to its response format's schema or
to a call of its tools by the engine's grammar."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from app.backends.grammar import SchemaRefused, call_or_text, checked_grammar
from app.backends.protocol import ResponseFormat, SamplingParams
from app.backends.qlora.engine import Sampling
from app.backends.tools import Tools, call_schema
from app.errors import InvalidRequest


def reply_sampling(params: SamplingParams, schema: Mapping[str, Any] | None) -> Sampling:
    """How the reply is sampled: held to the response format's schema, or to a call of the
    request's tools."""
    p = params
    sampling = Sampling(p.max_tokens, p.temperature, p.top_p, p.seed, schema, logprobs=p.logprobs)
    return tool_sampling(sampling, p.tools) if p.tools is not None else sampling


def tool_sampling(sampling: Sampling, tools: Tools) -> Sampling:
    """`sampling` held to a call of the tools the model may call: only a call where it must
    call one, else a call or prose. Parameters the grammar library cannot compile are a 400."""
    call = call_schema(tools)
    try:
        checked_grammar(call, None)
    except (SchemaRefused, TypeError, ValueError) as exc:
        raise InvalidRequest.fields((["tools"], f"cannot be held to: {exc}", None)) from None
    if tools.must_call:
        return replace(sampling, json_schema=call)
    return replace(sampling, lark=call_or_text(call))


def checked_schema(shape: ResponseFormat | None) -> Mapping[str, Any] | None:
    """The schema a structured reply is held to (any object for JSON); one the grammar
    library cannot compile is refused, naming why."""
    if shape is None:
        return None
    schema = shape.json_schema()
    try:
        checked_grammar(schema, None)
    except SchemaRefused as exc:
        raise InvalidRequest.fields((["response_format"], str(exc), None)) from None
    except (TypeError, ValueError) as exc:  # no JSON Schema at all
        reason = f"not a JSON Schema this service reads ({exc})"
        raise InvalidRequest.fields((["response_format"], reason, None)) from None
    return schema
