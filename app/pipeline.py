"""The in-process pipeline the HTTP layer is thin over: admit, lease, generate, measure, log."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, aclosing
from dataclasses import replace
from typing import Any, TypeVar

from app.adapters import is_remote, spec_version, unavailable_reason
from app.adapters.protocol import Adapter, FinishReason, ModelInfo, Piece, SamplingParams
from app.admission import Admission
from app.banking.intents import IntentSet, IntentSplitter
from app.banking.pii import blocked, redact
from app.errors import GenerationTimeout, InvalidRequest, ServiceError, UpstreamError
from app.fallback import Standby
from app.registry import build_registry
from app.results import GenerateResult, ModelStatus, StreamEvent
from app.settings import Settings
from app.switching import ActiveModel, SwitchResult
from app.telemetry.benchlog import BenchmarkLog
from app.telemetry.metrics import Metrics
from app.telemetry.trace import RequestTrace

__all__ = ["GenerateResult", "ModelStatus", "Pipeline", "StreamEvent"]
logger = logging.getLogger(__name__)
T = TypeVar("T")
_NO_MODEL = ModelInfo("none", "none", "none")


async def _within(deadline: float, awaitable: Awaitable[T]) -> T:
    async with asyncio.timeout_at(deadline):
        return await awaitable


async def _unbounded(deadline: float, awaitable: Awaitable[T]) -> T:
    return await awaitable


class Pipeline:
    def __init__(self, settings: Settings, metrics: Metrics | None = None):
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.registry = build_registry(settings)
        self.intents = IntentSet.load()
        self._model = ActiveModel(self.registry, settings.switch_mode, self.metrics)
        self._admission = Admission(
            settings.max_concurrency, settings.max_queue, self.metrics.queue_depth
        )
        self._log = BenchmarkLog(settings.benchmark_log, settings.benchmark_every)
        fallback = settings.fallback_model
        self._standby = Standby(self.registry[fallback] if fallback else None)

    async def start(self) -> None:
        """Open the log and load ACTIVE_MODEL. A model that fails to load is logged, and the
        service runs without one (readiness 503) until an admin switches to one that loads."""
        if self.settings.active_model not in self.registry:
            raise ValueError(
                f"ACTIVE_MODEL={self.settings.active_model!r} is not a registered "
                f"model; one of {', '.join(sorted(self.registry))}"
            )
        self._log.start()
        try:
            await self._model.start(self.settings.active_model)
        except ServiceError as exc:
            logger.error("no model serves: %s", exc.message)
        await self._standby.start()

    async def close(self) -> None:
        await self._model.close()
        await self._standby.close()
        await asyncio.to_thread(self._log.close)

    @property
    def active(self) -> ModelInfo | None:
        return self._model.info

    @property
    def problem(self) -> str | None:
        """Why the active model cannot serve now (key rejected, circuit open), or None."""
        return self._model.problem

    @property
    def fallback(self) -> str | None:
        """The loaded FALLBACK_MODEL that would answer for the active model, if any."""
        active = self._model.info
        if active is None or self._standby.replacing(active) is None:
            return None
        return self._standby.name

    @property
    def switching(self) -> bool:
        """True while a model switch is in progress."""
        return self._model.switching

    async def generate(self, prompt: str, **options: Any) -> GenerateResult:
        """One completion; options as in `stream`."""
        parts: list[str] = []
        deadline = asyncio.get_running_loop().time() + self.settings.request_timeout_s
        # One deadline for the whole answer: nothing runs between its pieces but this loop,
        # so the per-piece deadlines a stream needs would only cost time (about 11% of a
        # request to the echo model).
        timeout = asyncio.timeout_at(deadline)
        try:
            async with (
                timeout,
                aclosing(self._events(prompt, options, False, deadline, timeout.expired)) as events,
            ):
                async for event in events:
                    if event.result is not None:
                        return replace(event.result, text="".join(parts))
                    parts.append(event.delta)
        except TimeoutError as exc:
            raise self._timeout_error() from exc
        raise RuntimeError("generation ended without a result")

    def _timeout_error(self) -> GenerationTimeout:
        return GenerationTimeout(
            f"no answer within REQUEST_TIMEOUT_S={self.settings.request_timeout_s:g} s"
        )

    def stream(self, prompt: str, **options: Any) -> AsyncGenerator[StreamEvent, None]:
        """Reply deltas, then one event with the result. Options: max_tokens, temperature,
        top_p, stop, seed."""
        deadline = asyncio.get_running_loop().time() + self.settings.request_timeout_s
        return self._events(prompt, options, True, deadline)

    async def switch(self, name: str) -> SwitchResult:
        return await self._model.switch(name)

    def models(self) -> list[ModelStatus]:
        active = self._model.name
        statuses = []
        for name, spec in self.registry.items():
            reason = unavailable_reason(spec)
            loaded = name == active
            version = (
                self._model.info.version if loaded and self._model.info else spec_version(spec)
            )
            statuses.append(
                ModelStatus(name, spec.backend, version, reason is None, reason, loaded)
            )
        return statuses

    def benchmark_summary(self) -> dict[str, Any]:
        """Per-model figures from the benchmark log (blocks until pending rows are written)."""
        return self._log.summary()

    def sampling_params(
        self,
        max_tokens: int = 128,
        temperature: float = 0.7,
        top_p: float = 1.0,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
    ) -> SamplingParams:
        """The request's options, checked against the configured limits."""
        limit = self.settings.max_tokens_limit
        errors: list[tuple[str, str, Any]] = []
        if not 1 <= max_tokens <= limit:
            errors.append(("max_tokens", f"must be between 1 and {limit}", max_tokens))
        if not 0.0 <= temperature <= 2.0:
            errors.append(("temperature", "must be between 0 and 2", temperature))
        if not 0.0 < top_p <= 1.0:
            errors.append(("top_p", "must be greater than 0 and at most 1", top_p))
        if stop is not None and (len(stop) > 4 or not all(stop)):
            errors.append(("stop", "at most 4 non-empty strings", list(stop)))
        if errors:
            raise InvalidRequest(
                "; ".join(f"{f}: {m}" for f, m, _ in errors),
                [{"loc": ["body", f], "msg": m, "input": v} for f, m, v in errors],
            )
        return SamplingParams(max_tokens, temperature, top_p, tuple(stop or ()), seed)

    def _check_prompt(self, prompt: str) -> None:
        limit = self.settings.max_prompt_chars
        if not 1 <= len(prompt) <= limit:
            raise InvalidRequest(
                f"prompt: must be 1 to {limit} characters, got {len(prompt)}",
                [
                    {
                        "loc": ["body", "prompt"],
                        "msg": f"length must be 1..{limit}",
                        "input_length": len(prompt),
                    }
                ],
            )

    async def _events(
        self,
        prompt: str,
        options: dict[str, Any],
        streamed: bool,
        deadline: float,
        expired: Callable[[], bool] | None = None,
    ) -> AsyncGenerator[StreamEvent, None]:
        """The request's events. Each await is bounded by the deadline, unless the caller
        bounds the whole iteration itself and passes `expired` to tell its timeout apart."""
        trace = RequestTrace(streamed)
        within = _within if expired is None else _unbounded
        try:
            self._check_prompt(prompt)
            params = self.sampling_params(**options)
            async with AsyncExitStack() as stack:
                await within(deadline, stack.enter_async_context(self._admission.slot()))
                adapter = await within(deadline, stack.enter_async_context(self._model.lease()))
                pieces, piece = await self._open(
                    stack, adapter, prompt, params, deadline, within, trace
                )
                splitter = IntentSplitter(self.intents)
                finish: FinishReason = "length"
                while piece is not None:
                    if piece.text:
                        trace.mark_token()
                        if delta := splitter.feed(piece.text):
                            yield StreamEvent(trace.request_id, delta)
                    if piece.usage is not None and piece.finish_reason is not None:
                        trace.usage, finish = piece.usage, piece.finish_reason
                    piece = await within(deadline, anext(pieces, None))
                if tail := splitter.finish():
                    yield StreamEvent(trace.request_id, tail)
                trace.intent = splitter.intent
                trace.end()
            yield StreamEvent(trace.request_id, result=self._result(trace, finish))
        except TimeoutError as exc:
            error = self._timeout_error()
            trace.fail(error)
            raise error from exc
        except ServiceError as exc:
            trace.fail(exc)
            raise
        except (asyncio.CancelledError, GeneratorExit):
            if expired is not None and expired():
                trace.fail(self._timeout_error())  # the caller's deadline, not the client
            else:
                trace.cancel()
            raise
        except Exception:
            trace.fail(ServiceError("internal error"))
            logger.exception("generation %s failed", trace.request_id)
            raise
        finally:
            self._record(trace)

    async def _open(
        self,
        stack: AsyncExitStack,
        adapter: Adapter,
        prompt: str,
        params: SamplingParams,
        deadline: float,
        within: Callable[[float, Awaitable[Piece | None]], Awaitable[Piece | None]],
        trace: RequestTrace,
    ) -> tuple[AsyncGenerator[Piece, None], Piece | None]:
        """Start the adapter's stream and await its first piece. A remote model that fails
        before it hands the request to FALLBACK_MODEL, when one is loaded."""
        trace.model = info = adapter.info
        gauge = self.metrics.series(info.name, info.backend).in_flight
        gauge.inc()
        pieces: AsyncGenerator[Piece, None] | None = None
        try:
            pieces = adapter.stream(self._outbound(prompt, info), params)
            first = await within(deadline, anext(pieces, None))
        except BaseException as exc:
            if pieces is not None:
                await pieces.aclose()
            gauge.dec()
            if not isinstance(exc, UpstreamError):
                raise
            if (standby := self._standby.replacing(info)) is None:
                raise
            logger.warning("%s failed (%s); %s answers", info.name, exc.type, standby.info.name)
            self.metrics.fallbacks.labels(info.name, standby.info.name, exc.type).inc()
            trace.fallback_from = info.name
            return await self._open(stack, standby, prompt, params, deadline, within, trace)
        stack.callback(gauge.dec)
        stack.push_async_callback(pieces.aclose)
        return pieces, first

    def _outbound(self, prompt: str, info: ModelInfo) -> str:
        """The prompt as it may leave the process: CLOUD_PII_POLICY for remote models."""
        policy = self.settings.cloud_pii_policy
        if policy == "allow" or not is_remote(info.backend):
            return prompt
        redaction = redact(prompt)
        action = "blocked" if policy == "block" else "redacted"
        for kind, count in redaction.found.items():
            self.metrics.pii_redactions.labels(kind, action).inc(count)
        if policy == "block" and redaction.found:
            raise blocked(redaction.found)
        return redaction.text

    def _result(self, trace: RequestTrace, finish: FinishReason) -> GenerateResult:
        info = trace.model or _NO_MODEL
        ttft = trace.ttft_s
        return GenerateResult(
            id=trace.request_id,
            model=info.name,
            backend=info.backend,
            version=info.version,
            text="",
            intent=trace.intent,
            finish_reason=finish,
            prompt_tokens=trace.usage.prompt_tokens,
            completion_tokens=trace.usage.completion_tokens,
            latency_ms=round(trace.latency_s * 1000, 2),
            ttft_ms=None if ttft is None else round(ttft * 1000, 2),
            fallback_from=trace.fallback_from,
        )

    def _record(self, trace: RequestTrace) -> None:
        trace.end()
        fallback = self._model.info or _NO_MODEL
        trace.observe(self.metrics, fallback)
        self._log.append(trace.row(fallback))
        if trace.outcome == "ok":
            self._admission.observe_latency(trace.latency_s)
