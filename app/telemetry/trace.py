"""One request's timeline and outcome, turned into its log row and its metric samples."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

from app.adapters.protocol import ModelInfo, Usage
from app.errors import Outcome, ServiceError
from app.telemetry.benchlog import utc_now
from app.telemetry.metrics import Metrics

_NO_USAGE = Usage(0, 0)


def new_request_id() -> str:
    """96 random bits: unique enough for request ids, without uuid4's syscall per call."""
    return f"gen-{random.getrandbits(96):024x}"


@dataclass
class RequestTrace:
    stream: bool
    request_id: str = field(default_factory=new_request_id)
    started: float = field(default_factory=time.perf_counter)
    model: ModelInfo | None = None
    first_token_at: float | None = None
    finished_at: float | None = None
    outcome: Outcome = "ok"
    error_type: str | None = None
    usage: Usage = _NO_USAGE
    intent: str | None = None
    fallback_from: str | None = None  # the remote model that failed before FALLBACK_MODEL answered

    def mark_token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()

    def end(self) -> None:
        if self.finished_at is None:
            self.finished_at = time.perf_counter()

    def fail(self, error: ServiceError) -> None:
        self.outcome, self.error_type = error.outcome, error.type
        self.end()

    def cancel(self) -> None:
        """The caller went away; a request that had already finished stays as it was."""
        if self.finished_at is None:
            self.outcome, self.error_type = "cancelled", "cancelled"
            self.end()

    @property
    def latency_s(self) -> float:
        return (self.finished_at or time.perf_counter()) - self.started

    @property
    def ttft_s(self) -> float | None:
        return None if self.first_token_at is None else self.first_token_at - self.started

    @property
    def tpot_s(self) -> float | None:
        """Mean time per output token after the first one."""
        n = self.usage.completion_tokens
        if self.first_token_at is None or self.finished_at is None or n < 2:
            return None
        return (self.finished_at - self.first_token_at) / (n - 1)

    @property
    def tokens_per_s(self) -> float:
        return self.usage.completion_tokens / self.latency_s if self.latency_s > 0 else 0.0

    def row(self, fallback: ModelInfo) -> dict[str, Any]:
        """The benchmark-log row: figures only, never the prompt or the reply."""
        info = self.model or fallback
        return {
            "ts": utc_now(),
            "type": "request",
            "request_id": self.request_id,
            "model": info.name,
            "backend": info.backend,
            "version": info.version,
            "status": self.outcome,
            "error_type": self.error_type,
            "stream": self.stream,
            "latency_ms": _ms(self.latency_s),
            "ttft_ms": _ms(self.ttft_s),
            "tpot_ms": _ms(self.tpot_s),
            "prompt_tokens": self.usage.prompt_tokens,
            "completion_tokens": self.usage.completion_tokens,
            "tokens_per_s": round(self.tokens_per_s, 2),
            "intent": self.intent,
            "cost_usd": self.usage.cost_usd,
            "fallback_from": self.fallback_from,
        }

    def observe(self, metrics: Metrics, fallback: ModelInfo) -> None:
        info = self.model or fallback
        series = metrics.series(info.name, info.backend)
        metrics.requests_of(series, info.name, info.backend, self.outcome).inc()
        series.request_latency.observe(self.latency_s)
        if (ttft := self.ttft_s) is not None:
            series.ttft.observe(ttft)
        if (tpot := self.tpot_s) is not None:
            series.tpot.observe(tpot)
        series.prompt_tokens.inc(self.usage.prompt_tokens)
        series.completion_tokens.inc(self.usage.completion_tokens)
        if self.usage.cost_usd:
            series.cost.inc(self.usage.cost_usd)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)
