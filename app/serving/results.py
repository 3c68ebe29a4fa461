"""What the pipeline answers: a result, and the events of a stream."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from app.backends.protocol import FinishReason, ModelInfo, TokenLogprob
from app.backends.tools import ToolCall
from app.banking.intents import Handoff
from app.telemetry.record import NO_MODEL, RequestRecord

OPENAI_ONLY = "openai_only"  # a result field `/generate` does not answer with


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Where a request comes from: the API it used, the model it named (None: whichever is
    active), its caller's `user` id (kept in the row as a pseudonym, never as given), the
    intent it is known to have (an evaluation's label, recorded for scoring), and whether its
    caller may give one (an evaluation's or the admin's key: a user's labels would steer the
    accuracy an admin decides on), and the key whose limits it counts against."""

    api: str = "generate"
    model: str | None = None
    user: str | None = None
    label: str | None = None
    may_label: bool = True
    key: str = "open"  # the caller's key, by its pseudonym: whose limits it counts against


@dataclass  # not frozen: one a request, and frozen's __init__ sets each field the slow way
class GenerateResult:
    id: str
    model: str
    backend: str
    version: str
    text: str
    intent: str | None
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    ttft_ms: float | None
    fallback_from: str | None = field(
        default=None,
        metadata={"description": "The remote model that failed before FALLBACK_MODEL answered."},
    )
    handoff: Handoff | None = field(
        default=None,
        metadata={
            "description": "Why the answer is a hand-off to a person (`intent` is then null and "
            "`text` the approved hand-off reply): `out_of_scope`, a message the assistant does "
            "not serve; `low_confidence`, an intent less likely than the model's calibrated "
            "threshold; null for an answer of an intent."
        },
    )
    # OpenAI's API only (`/generate` offers no tools): the calls the model made, and whether it
    # was offered the request's tools at all (None: none were asked for)
    tool_calls: tuple[ToolCall, ...] = field(default=(), metadata={OPENAI_ONLY: True})
    tools: str | None = field(default=None, metadata={OPENAI_ONLY: True})
    # the reply's tokens' log-probabilities, when asked (None for a hand-off)
    logprobs: tuple[TokenLogprob, ...] | None = field(default=None, metadata={OPENAI_ONLY: True})
    confidence: float | None = field(
        default=None,
        metadata={
            "description": "The probability the model gave the intent (or the hand-off) it "
            "chose, among all it could choose; null for a model that gives none."
        },
    )

    def fields(self) -> dict[str, Any]:
        """Every field by name, in order: the JSON of /generate's answer (`GeneratePublic`,
        the API's schema, is made from this class)."""
        return {k: v for k, v in self.__dict__.items() if k not in _OPENAI_FIELDS}

    @classmethod
    def of(
        cls,
        record: RequestRecord,
        text: str,
        finish: FinishReason,
        tool_calls: tuple[ToolCall, ...] = (),
        logprobs: tuple[TokenLogprob, ...] | None = None,
    ) -> GenerateResult:
        """The answer of a finished request, from its record."""
        info = record.model or NO_MODEL
        ttft = record.ttft_s
        return cls(
            id=record.request_id,
            model=info.name,
            backend=info.backend,
            version=info.version,
            text=text,
            intent=record.intent,
            finish_reason=finish,
            prompt_tokens=record.usage.prompt_tokens,
            completion_tokens=record.usage.completion_tokens,
            latency_ms=round(record.latency_s * 1000, 2),
            ttft_ms=None if ttft is None else round(ttft * 1000, 2),
            fallback_from=record.fallback_from,
            handoff=record.handoff,
            tool_calls=tool_calls,
            tools=record.tools,
            logprobs=logprobs,
            confidence=None if record.confidence is None else round(record.confidence, 4),
        )


_OPENAI_FIELDS = frozenset(
    f.name for f in dataclasses.fields(GenerateResult) if f.metadata.get(OPENAI_ONLY)
)


@dataclass(slots=True)  # one a delta: not frozen, for GenerateResult's reason
class StreamEvent:
    """A reply delta; the last event of a stream carries the whole result instead."""

    id: str
    delta: str = ""
    result: GenerateResult | None = None
    model: ModelInfo | None = None  # the model answering (the fallback, when it answers)
    handoff: str | None = None  # why a delta is the hand-off text, not the model's reply
    logprobs: tuple[TokenLogprob, ...] | None = None  # the delta's tokens', when asked
