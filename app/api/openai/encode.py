"""Pipeline results in OpenAI's response shapes: a chat completion, a text completion, and
their stream chunks. The banking intent rides in a top-level `bankllm` object (OpenAI clients
ignore it); `content` and `text` hold the reply without its `intent:` line."""

from __future__ import annotations

from typing import Any, Literal

from app.backends.protocol import Alternative, ModelInfo, TokenLogprob
from app.serving.pipeline import GenerateResult, StreamEvent

OpenAIEndpoint = Literal["chat", "completions"]
_OBJECT = {"chat": "chat.completion", "completions": "text_completion"}
_CHUNK = {"chat": "chat.completion.chunk", "completions": "text_completion"}
_PREFIX = {"chat": "chatcmpl-", "completions": "cmpl-"}


def response_id(kind: OpenAIEndpoint, request_id: str) -> str:
    """OpenAI's id for our request id (`gen-…`), so a response and its log row correlate."""
    return _PREFIX[kind] + request_id.removeprefix("gen-")


def usage(result: GenerateResult) -> dict[str, int]:
    total = result.prompt_tokens + result.completion_tokens
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": total,
    }


def bankllm(result: GenerateResult) -> dict[str, Any]:
    return {
        "request_id": result.id,
        "backend": result.backend,
        "version": result.version,
        "intent": result.intent,
        "handoff": result.handoff,
        "confidence": result.confidence,
        "latency_ms": result.latency_ms,
        "ttft_ms": result.ttft_ms,
        "fallback_from": result.fallback_from,
        "tools": result.tools,  # "not_offered": the model answered without seeing them
    }


def tool_calls(result: GenerateResult, indexed: bool = False) -> list[dict[str, Any]]:
    """The calls in OpenAI's shape; a stream's deltas number them."""
    return [
        ({"index": i} if indexed else {})
        | {
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": call.arguments},
        }
        for i, call in enumerate(result.tool_calls)
    ]


def shaped_logprobs(
    kind: OpenAIEndpoint, entries: tuple[TokenLogprob, ...], before: bytes = b""
) -> dict[str, Any]:
    """Log-probabilities in the endpoint's shape: chat's list of tokens with their
    alternatives; completions' parallel lists, each token's offset the characters its text
    starts after (the bytes `before` it counted, a part of a character not)."""
    if kind == "chat":
        content = [
            _token(e) | {"top_logprobs": [_token(alternative) for alternative in e.top]}
            for e in entries
        ]
        return {"content": content, "refusal": None}
    offsets = []
    for e in entries:
        offsets.append(len(before.decode("utf-8", errors="ignore")))
        before += e.bytes
    return {
        "tokens": [e.token for e in entries],
        "token_logprobs": [e.logprob for e in entries],
        "top_logprobs": [{a.token: a.logprob for a in e.top} for e in entries],
        "text_offset": offsets,
    }


def _token(entry: TokenLogprob | Alternative) -> dict[str, Any]:
    return {"token": entry.token, "logprob": entry.logprob, "bytes": list(entry.bytes)}


def completion(
    kind: OpenAIEndpoint, result: GenerateResult, created: int, structured: bool = False
) -> dict[str, Any]:
    """The whole answer. A hand-off asked for structured output is a chat's `refusal` (its text
    is no JSON): what OpenAI's SDKs read as a refusal, `parsed` None."""
    choice: dict[str, Any] = {"index": 0}
    if kind == "chat" and structured and result.handoff is not None:
        choice["message"] = {"role": "assistant", "content": None, "refusal": result.text}
    elif kind == "chat" and result.tool_calls:
        content = result.text or None  # what the model said beside its calls, if anything
        choice["message"] = {"role": "assistant", "content": content}
        choice["message"]["tool_calls"] = tool_calls(result)
    elif kind == "chat":
        choice["message"] = {"role": "assistant", "content": result.text}
    else:
        choice["text"] = result.text
    logprobs = None if result.logprobs is None else shaped_logprobs(kind, result.logprobs)
    choice |= {"logprobs": logprobs, "finish_reason": result.finish_reason}
    return {
        "id": response_id(kind, result.id),
        "object": _OBJECT[kind],
        "created": created,
        "model": result.model,
        "system_fingerprint": result.version,
        "choices": [choice],
        "usage": usage(result),
        "bankllm": bankllm(result),
    }


class Chunks:
    """The chunks of one streamed answer: the same id, created and model on each."""

    def __init__(
        self,
        kind: OpenAIEndpoint,
        request_id: str,
        model: ModelInfo,
        created: int,
        usage: bool = False,
    ):
        self._kind = kind
        self._usage = usage  # with include_usage, OpenAI puts `usage: null` on every chunk
        self._said = b""  # the bytes of the tokens given so far (completions' offsets)
        self._head = {
            "id": response_id(kind, request_id),
            "object": _CHUNK[kind],
            "created": created,
            "model": model.name,
            "system_fingerprint": model.version,
        }

    def first(self) -> dict[str, Any]:
        """Chat's opening chunk (the role), sent once the first output exists."""
        return self._choice({"delta": {"role": "assistant", "content": ""}})

    def text(
        self,
        delta: str,
        refusal: bool = False,
        logprobs: tuple[TokenLogprob, ...] | None = None,
    ) -> dict[str, Any]:
        shaped = None
        if logprobs is not None:
            shaped = shaped_logprobs(self._kind, logprobs, self._said)
            self._said += b"".join(e.bytes for e in logprobs)
        if self._kind == "chat":
            return self._choice({"delta": {"refusal" if refusal else "content": delta}}, shaped)
        return self._choice({"text": delta}, shaped)

    def calls(self, result: GenerateResult) -> dict[str, Any]:
        return self._choice({"delta": {"tool_calls": tool_calls(result, indexed=True)}})

    def last(self, result: GenerateResult) -> dict[str, Any]:
        """The chunk with the finish reason, and our figures."""
        body: dict[str, Any] = {"delta": {}} if self._kind == "chat" else {"text": ""}
        chunk = self._choice(body, finish=result.finish_reason)
        chunk["bankllm"] = bankllm(result)
        return chunk

    def usage(self, result: GenerateResult) -> dict[str, Any]:
        """With `stream_options.include_usage`: the chunk before [DONE], with no choices."""
        return {**self._head, "choices": [], "usage": usage(result)}

    def _choice(
        self, body: dict[str, Any], logprobs: Any = None, finish: str | None = None
    ) -> dict[str, Any]:
        choice = {"index": 0, **body, "logprobs": logprobs, "finish_reason": finish}
        chunk: dict[str, Any] = {**self._head, "choices": [choice]}
        if self._usage:
            chunk["usage"] = None
        return chunk


class ChunkEncoder:
    """A stream's events as chunks: chat's role chunk before the first output, and with
    `include_usage` the usage chunk after the last."""

    def __init__(
        self, kind: OpenAIEndpoint, created: int, include_usage: bool, structured: bool = False
    ):
        self._kind = kind
        self._created = created
        self._include_usage = include_usage
        self._structured = structured  # a hand-off's deltas are a refusal, not content
        self._chunks: Chunks | None = None

    def __call__(self, event: StreamEvent) -> list[dict[str, Any]]:
        payloads = []
        chunks = self._chunks
        if chunks is None:
            assert event.model is not None  # the first event names the model answering
            chunks = self._chunks = Chunks(
                self._kind, event.id, event.model, self._created, self._include_usage
            )
            if self._kind == "chat":
                payloads.append(chunks.first())
        if event.result is not None:
            if event.result.tool_calls:  # each whole, in one delta before the finish
                payloads.append(chunks.calls(event.result))
            payloads.append(chunks.last(event.result))
            if self._include_usage:
                payloads.append(chunks.usage(event.result))
        elif event.delta:
            refusal = self._structured and event.handoff is not None
            payloads.append(chunks.text(event.delta, refusal, event.logprobs))
        return payloads
