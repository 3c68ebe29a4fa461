"""What the pipeline answers: a result, the events of a stream, a model's status."""

from __future__ import annotations

from dataclasses import dataclass

from app.adapters.protocol import FinishReason


@dataclass(frozen=True)
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
    fallback_from: str | None = None  # the remote model that failed before `model` answered


@dataclass(frozen=True)
class StreamEvent:
    """A reply delta; the last event of a stream carries the result instead (its text empty)."""

    id: str
    delta: str = ""
    result: GenerateResult | None = None


@dataclass(frozen=True)
class ModelStatus:
    name: str
    backend: str
    version: str
    available: bool
    reason: str | None
    loaded: bool
