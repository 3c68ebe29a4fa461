"""One request's record: its timeline and outcome, and the one object that writes every effect
a request has (its metric samples, its benchmark-log row, the latency admission learns from)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from app.backends.machine_time import MachineMeter, MachineMeters
from app.backends.protocol import ModelInfo, Usage
from app.banking.intents import Handoff
from app.banking.pii import PiiKind
from app.errors import RequestStatus, ServiceError
from app.telemetry.benchlog import BenchmarkLog
from app.telemetry.clock import utc_now
from app.telemetry.metrics import Metrics, ModelSeries
from app.telemetry.pseudonyms import PER_PROCESS, Pseudonyms

_NO_USAGE = Usage(0, 0)
NO_MODEL = ModelInfo("none", "none", "none")


def new_request_id() -> str:
    """96 random bits: unique enough for request ids, without uuid4's syscall per call."""
    return f"gen-{random.getrandbits(96):024x}"


@dataclass(frozen=True)
class RecordSinks:
    """Where records go. `attributed` names the model a request is counted against before it
    reached one (a 401, a full queue): the active model."""

    metrics: Metrics
    log: BenchmarkLog
    attributed: Callable[[], ModelInfo | None]
    on_latency: Callable[[float], None]  # a successful request's latency, for Retry-After
    pseudonyms: Pseudonyms = PER_PROCESS  # names callers' `user` ids in rows
    machines: MachineMeters = field(default_factory=MachineMeters)  # local models' time

    def open(self, stream: bool, api: str = "generate") -> RequestRecord:
        return RequestRecord(self, stream, api)


class RequestRecord:
    __slots__ = (
        "_committed",
        "_in_flight",
        "_ledger",
        "_machine",
        "api",
        "confidence",
        "error_type",
        "fallback_from",
        "finished_at",
        "first_token_at",
        "handoff",
        "intent",
        "label",
        "machine_s",
        "machine_usd",
        "model",
        "request_id",
        "started",
        "status",
        "stream",
        "tool_calls",
        "tools",
        "usage",
        "user",
    )

    def __init__(self, ledger: RecordSinks, stream: bool, api: str):
        self._ledger = ledger
        self.stream = stream
        self.api = api  # generate | chat | completions: the route it came through
        self.user: str | None = None  # the pseudonym of the caller's `user` id, never the id
        self.request_id = new_request_id()
        self.started = time.perf_counter()
        self.model: ModelInfo | None = None  # the model that answers (or failed to)
        self.first_token_at: float | None = None
        self.finished_at: float | None = None
        self.status: RequestStatus = "ok"
        self.error_type: str | None = None
        self.usage = _NO_USAGE
        self.intent: str | None = None
        self.handoff: Handoff | None = None  # why the answer was handed off, if it was
        self.confidence: float | None = None  # the probability the model gave its intent
        self.label: str | None = None  # the intent an evaluation knows the prompt has
        self.fallback_from: str | None = None  # the remote model that failed before `model`
        # with tools asked for: whether the model was offered them, and the ones it called
        self.tools: Literal["offered", "not_offered"] | None = None
        self.tool_calls: tuple[str, ...] = ()  # names only: arguments may be a customer's
        self._in_flight: ModelSeries | None = None  # the series counting it in flight, meanwhile
        self._machine: tuple[MachineMeter, float] | None = None  # its local model's meter
        self.machine_s = 0.0  # the answering model's unit-seconds of its machine
        self.machine_usd = 0.0  # what the local models' machines cost it
        self._committed = False

    def by_user(self, user: str | None) -> None:
        """Keep who asked as a pseudonym: rows group by caller without naming one."""
        if user is not None:
            self.user = self._ledger.pseudonyms.name(user)

    def serve_with(self, info: ModelInfo) -> None:
        """The request is now with this model (the active one, then perhaps the fallback)."""
        self._leave()
        self.model = info
        self._in_flight = self._ledger.metrics.series(info.name, info.backend)
        self._in_flight.in_flight.inc()
        self.machine_s = 0.0
        if info.machine is not None:
            meter = self._ledger.machines.of(info.name, info.version, info.machine)
            self._machine = (meter, meter.enter())

    def fell_back(self, failed: ModelInfo, error: ServiceError, to: ModelInfo) -> None:
        self._ledger.metrics.fallbacks.labels(failed.name, to.name, error.type).inc()
        self.fallback_from = failed.name
        self.serve_with(to)

    def found_pii(self, found: Mapping[PiiKind, int], action: str) -> None:
        for kind, count in found.items():
            self._ledger.metrics.pii_redactions.labels(kind, action).inc(count)

    def mark_token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()

    def end(self) -> None:
        if self.finished_at is None:
            self.finished_at = time.perf_counter()

    def fail(self, error: ServiceError) -> None:
        self.status, self.error_type = error.outcome, error.type
        self.end()

    def cancel(self) -> None:
        """The caller went away; a request whose answer was already whole stays as it was."""
        if self.finished_at is None:
            self.status, self.error_type = "cancelled", "cancelled"
            self.end()

    def commit(self) -> None:
        """Write every effect of the request, once."""
        if self._committed:
            return
        self._committed = True
        self.end()
        self._leave()
        info = self.model or self._ledger.attributed() or NO_MODEL
        figures = _Figures(self.latency_s, self.ttft_s, self.tpot_s)
        self._observe(info, figures)
        self._ledger.log.append(self._row(info, figures))
        if self.status == "ok":
            self._ledger.on_latency(figures.latency_s)

    @property
    def has_usage(self) -> bool:
        """Whether the model told what the request used (its stream's finish piece came)."""
        return self.usage is not _NO_USAGE

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

    def _row(self, info: ModelInfo, figures: _Figures) -> dict[str, Any]:
        """The benchmark-log row: figures only, never the prompt or the reply."""
        latency_s, ttft_s, tpot_s = figures
        usage = self.usage
        return {
            "ts": utc_now(),
            "type": "request",
            "request_id": self.request_id,
            "model": info.name,
            "backend": info.backend,
            "version": info.version,
            "status": self.status,
            "error_type": self.error_type,
            "stream": self.stream,
            "latency_ms": round(latency_s * 1000, 2),
            "ttft_ms": None if ttft_s is None else round(ttft_s * 1000, 2),
            "tpot_ms": None if tpot_s is None else round(tpot_s * 1000, 2),
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "tokens_per_s": round(usage.completion_tokens / latency_s, 2) if latency_s > 0 else 0.0,
            "intent": self.intent,
            "handoff": self.handoff,
            "confidence": None if self.confidence is None else round(self.confidence, 4),
            "label": self.label,
            "cost_usd": self.cost_usd,
            "machine_s": round(self.machine_s, 4) if info.machine else None,
            "machine_unit": info.machine.unit if info.machine else None,
            "fallback_from": self.fallback_from,
            "tools": self.tools,
            "tool_calls": list(self.tool_calls),
            "api": self.api,
            "user": self.user,
        }

    def _leave(self) -> None:
        if self._in_flight is not None:
            self._in_flight.in_flight.dec()
            self._in_flight = None
        self._leave_machine()

    def _leave_machine(self) -> None:
        """Stop the local model's meter: its time on the machine, and what that cost (a
        request that fell back pays each model's machine at its own price)."""
        if self._machine is not None:
            meter, entered = self._machine
            self.machine_s = meter.leave(entered)
            self.machine_usd += meter.price.cost_usd(self.machine_s)
            self._machine = None

    def model_done(self, usage: Usage) -> None:
        """The model's last piece came, with what it used: its machine is no longer ours."""
        self.usage = usage
        self._leave_machine()

    @property
    def cost_usd(self) -> float | None:
        """What the request cost: the provider's bill, and the machine time of local models
        at the price their options set; None where neither is known."""
        if self.usage.cost_usd is None and self.machine_usd == 0.0:
            return None
        return round((self.usage.cost_usd or 0.0) + self.machine_usd, 10)

    def _observe(self, info: ModelInfo, figures: _Figures) -> None:
        series = self._ledger.metrics.series(info.name, info.backend)
        series.count(self.status, figures, self.usage, self.cost_usd)
        if self.handoff is not None:
            self._ledger.metrics.handoffs.labels(info.name, info.backend, self.handoff).inc()


class _Figures(NamedTuple):
    """A finished request's times, worked out once for its metrics and its row."""

    latency_s: float
    ttft_s: float | None
    tpot_s: float | None
