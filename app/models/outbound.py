"""What of a request may leave the process: a model that gives no log-probabilities is not
asked for them (400); the tools a model can be offered (a model that
cannot call them is refused a call it must make, and not shown them otherwise), and
CLOUD_PII_POLICY applied to a remote model's whole request, every turn, tool call's arguments
and stop string read as one text (redacted, or refused with a 422); local models get the
request as written."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

from app.backends.catalog import is_remote
from app.backends.protocol import Message, ModelInfo, SamplingParams, cannot_give_logprobs
from app.backends.tools import ToolCall, cannot_call_tools
from app.banking.pii import Policy, blocked, redact_all
from app.telemetry.record import RequestRecord

Request = tuple[tuple[Message, ...], SamplingParams]


def outbound(
    conversation: tuple[Message, ...],
    params: SamplingParams,
    info: ModelInfo,
    policy: Policy,
    record: RequestRecord | None,
) -> Request:
    """The turns and parameters as they may be sent to `info`'s model; each find is counted
    on the record (an evaluation's questions have none)."""
    if params.logprobs is not None and not info.gives_logprobs:
        raise cannot_give_logprobs(info)
    params = _offered_tools(params, info)
    if policy == "allow" or not is_remote(info.backend):
        return conversation, params
    texts = _texts(conversation)
    redactions = redact_all(texts + list(params.stop))
    if record is not None:
        record.found_pii(redactions.found, "blocked" if policy == "block" else "redacted")
    if policy == "block" and redactions.found:
        raise blocked(redactions.found)
    if not redactions.found:
        return conversation, params
    redacted = iter(redactions.texts)
    masked = tuple(_masked(m, redacted) for m in conversation)
    return masked, dataclasses.replace(params, stop=tuple(redacted))


def _offered_tools(params: SamplingParams, info: ModelInfo) -> SamplingParams:
    """The tools as `info`'s model gets them: a model that calls none must not be asked to
    call one (400), and answers in prose when it may."""
    tools = params.tools
    if tools is None or info.calls_tools:
        return params
    if tools.must_call:
        raise cannot_call_tools(info.name, info.backend)
    return dataclasses.replace(params, tools=None)


def _texts(conversation: tuple[Message, ...]) -> list[str]:
    """Every text of the turns, in order: each turn's content, then the strings of each of its
    tool calls' arguments (a customer's card number may be one)."""
    texts: list[str] = []
    for message in conversation:
        texts.append(message.content)
        for call in message.tool_calls:
            texts += _strings(_arguments(call))
    return texts


def _masked(message: Message, texts: Iterator[str]) -> Message:
    """The turn with its texts as redacted, taken from `texts` in `_texts`'s order."""
    content = next(texts)
    calls = tuple(
        dataclasses.replace(call, arguments=json.dumps(_replaced(_arguments(call), texts)))
        for call in message.tool_calls
    )
    return dataclasses.replace(message, content=content, tool_calls=calls)


def _arguments(call: ToolCall) -> Any:
    """A call's arguments as JSON values; text that is no JSON is one string."""
    try:
        return json.loads(call.arguments)
    except json.JSONDecodeError:
        return call.arguments


def _strings(value: Any) -> list[str]:
    """The strings and numbers of a JSON value, depth first (a card number may be either)."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, str) or (isinstance(value, int | float) and not isinstance(value, bool)):
        return [str(value)]
    return []


def _replaced(value: Any, texts: Iterator[str]) -> Any:
    """The JSON value with each of `_strings` taken in turn from `texts`; a number that was
    redacted stays a string, one that was not keeps its type."""
    if isinstance(value, dict):
        return {k: _replaced(v, texts) for k, v in value.items()}
    if isinstance(value, list):
        return [_replaced(v, texts) for v in value]
    if isinstance(value, str):
        return next(texts)
    if isinstance(value, int | float) and not isinstance(value, bool):
        text = next(texts)
        return value if text == str(value) else text
    return value
