"""The in-process pipeline the HTTP layer is thin over. One request walks one way: limits,
admission, a lease on the active model, the adapter's stream (the fallback's, when a remote
model fails before its first token), the intent split, and one record that writes its effects.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from app.backends.catalog import is_remote
from app.backends.protocol import Adapter, Message, ModelInfo
from app.banking.intents import IntentSet, IntentSplitter
from app.errors import (
    Draining,
    ModelNotActive,
    ServiceError,
)
from app.models.admin import Admin
from app.models.gate import Requirements
from app.models.loaded import Loaded, LoadedAdapters
from app.models.mirror import Mirror
from app.models.registry import ModelStatus, build_registry, model_statuses
from app.models.shadow import Shadow, ShadowOptions
from app.models.startup import Startup
from app.models.switching import ActiveModel, SwitchResult
from app.serving.admission import Admission
from app.serving.answering import open_answer, reply_deltas
from app.serving.deadline import Deadline
from app.serving.drain import Drain
from app.serving.failures import recorded_failure
from app.serving.limits import Limits
from app.serving.quotas import Grant, Quotas
from app.serving.results import GenerateResult, RequestContext, StreamEvent
from app.settings import Settings
from app.telemetry.audit import OPEN, Audit
from app.telemetry.benchlog import BenchmarkLog
from app.telemetry.metrics import Metrics
from app.telemetry.pseudonyms import Pseudonyms, warn_if_per_process
from app.telemetry.record import RecordSinks

__all__ = ["GenerateResult", "ModelStatus", "Pipeline", "RequestContext", "StreamEvent"]
logger = logging.getLogger(__name__)
GENERATE = RequestContext()


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        intents: IntentSet,
        metrics: Metrics | None = None,
        log: BenchmarkLog | None = None,  # a replica's own file (Ray Serve); BENCHMARK_LOG's
    ) -> None:
        self.settings = settings
        self.intents = intents
        self.metrics = metrics or Metrics()
        self.registry = build_registry(settings)
        self.limits = Limits(settings, self.registry, intents)
        self.quotas = Quotas(settings)
        self._loaded = LoadedAdapters(intents)
        self._model = ActiveModel(self.registry, self._loaded, settings.switch_mode, self.metrics)
        self._admission = Admission(
            settings.max_concurrency, settings.max_queue, self.metrics.queue_depth
        )
        self.log = log or BenchmarkLog(
            settings.benchmark_log, settings.benchmark_every, self.metrics.log_write_errors.inc
        )
        self._sinks = RecordSinks(
            self.metrics,
            self.log,
            lambda: self._model.info,
            self._admission.observe_latency,
            Pseudonyms.keyed(settings.pseudonym_secret),
        )
        self._fallback: Loaded | None = None
        self._policy = settings.cloud_pii_policy
        options = ShadowOptions.of(settings)
        self.shadow = Shadow(self._loaded, intents, self.metrics, self.log, options)
        audit = Audit(settings.audit_path, self.metrics.audit_write_errors.inc, self.log.stamp)
        self.admin = Admin(
            self.registry, self._model, self._loaded, self.shadow, self.log, intents, audit
        )
        self.startup = Startup(  # ACTIVE_MODEL at start, retried in the background if it fails
            self._model, self.metrics, settings.start_retry_initial_s, settings.start_retry_max_s
        )
        self.started_at = 0  # Unix time of start(): the `created` of /v1/models
        self.drain = Drain(settings.shutdown_grace_s)  # the graceful stop (SIGTERM)

    async def start(self) -> None:
        """Open the log and load ACTIVE_MODEL (and FALLBACK_MODEL). A model that fails to load
        is logged, and the service runs without it (readiness 503) until an admin switches."""
        for setting in ("active_model", "shadow_model"):
            if (name := getattr(self.settings, setting)) not in (*self.registry, None):
                raise ValueError(
                    f"{setting.upper()}={name!r} is not a registered model; one of "
                    f"{', '.join(sorted(self.registry))}"
                )
        self.started_at = int(time.time())
        warn_if_per_process(self.settings.pseudonym_secret)
        self.log.start()
        await self.startup.start(self.settings.active_model)
        started = "done" if self._model.info else "failed"  # then retried in the background
        self.admin.audit.write("start", "service", started, None, self.settings.active_model)
        if (fallback := self.settings.fallback_model) is not None:
            try:
                self._fallback = await self._loaded.acquire(self.registry[fallback])
            except ServiceError as exc:
                logger.error("FALLBACK_MODEL %s is off: %s", fallback, exc.message)
        if (shadow := self.settings.shadow_model) is not None:
            try:
                await self.shadow.set(self.registry[shadow], self.settings.shadow_sample)
            except ServiceError as exc:
                logger.error("SHADOW_MODEL %s is off: %s", shadow, exc.message)

    async def close(self) -> None:
        await self.startup.close()
        await self.shadow.close()
        await self._model.close()
        await self._loaded.close()
        await asyncio.to_thread(self.log.close)
        self.admin.audit.close()

    @property
    def active(self) -> ModelInfo | None:
        return self._model.info

    @property
    def current(self) -> Loaded | None:
        """The loaded active model (its adapter, its requests in flight), if any."""
        return self._model.current

    @property
    def problem(self) -> str | None:
        """Why the active model cannot serve now (key rejected, circuit open), or None."""
        return self._model.problem

    @property
    def failing(self) -> str | None:
        """Why the active model fails fast now, or None (see ActiveModel.failing)."""
        return self._model.failing

    @property
    def fallback(self) -> str | None:
        """The loaded FALLBACK_MODEL that would answer for the active model, if any."""
        active = self._model.info
        if active is None or self._fallback is None or self._fallback.name == active.name:
            return None
        return self._fallback.name

    async def generate(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Message] | None = None,
        origin: RequestContext = GENERATE,
        **options: Any,
    ) -> GenerateResult:
        """One whole answer; arguments as in `stream`."""
        deadline = Deadline(self.settings.request_timeout_s)
        result: GenerateResult | None = None
        # One timer for the whole answer: nothing runs between its pieces but this loop.
        async with deadline:
            async for event in self._walk(prompt, messages, origin, options, False, deadline):
                result = event.result
        assert result is not None, "a walk that ends without an error ends with its result"
        return result

    def stream(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Message] | None = None,
        origin: RequestContext = GENERATE,
        **options: Any,
    ) -> AsyncGenerator[StreamEvent, None]:
        """Reply deltas, then one event with the result. A `prompt` is one user turn, or give
        `messages`; `origin` says which API asked, for which model and user; options:
        max_tokens, temperature, top_p, stop, seed."""
        deadline = Deadline(self.settings.request_timeout_s)
        return self._walk(prompt, messages, origin, options, True, deadline)

    def refuse(self, error: ServiceError, api: str = "generate") -> None:
        """Record a request refused before it reached the pipeline (401, 413, a bad body)."""
        record = self._sinks.open(stream=False, api=api)
        record.fail(error)
        record.commit()

    async def switch(
        self, name: str, require: Requirements | None = None, by: str = OPEN
    ) -> SwitchResult:
        """Hot-switch the active model; with `require`, only a candidate that meets it. `by`
        is the admin key's id, for the audit trail."""
        if self.drain.draining:
            to = name if name in self.registry else None
            error = Draining()
            self.admin.audit.write(
                "switch", by, "failed", self._model.name, to, error_type=error.type
            )
            raise error
        return await self.admin.switch(name, require, by)

    async def until_switching(self) -> None:
        await self._model.until_switching()

    async def until_in_flight(self, count: int) -> None:
        """Resolves once `count` requests are with the active model at the same time."""
        current = self._model.current
        if current is None:
            raise RuntimeError("no model is loaded")
        await current.until_in_flight(count)

    def models(self) -> list[ModelStatus]:
        return model_statuses(self.registry, self._model.info)

    def benchmark_summary(self) -> dict[str, Any]:
        """Per-model figures from the benchmark log (blocks until pending rows are written)."""
        return self.log.summary()

    @property
    def _serves_remote(self) -> bool:
        """Whether the active model is a cloud one: its requests count against a day's spend."""
        info = self._model.info
        return info is not None and is_remote(info.backend)

    async def _walk(
        self,
        prompt: str | None,
        messages: Sequence[Message] | None,
        context: RequestContext,
        options: dict[str, Any],
        streamed: bool,
        deadline: Deadline,
    ) -> AsyncGenerator[StreamEvent, None]:
        """One request, start to end: checked, admitted, answered by the active model (or the
        fallback), its deltas yielded as they come when streamed, then its result; whatever
        happens, its record is written once."""
        record = self._sinks.open(streamed, context.api)
        record.by_user(context.user)
        mirror: Mirror | None = None
        grant: Grant | None = None
        try:
            self.drain.admit(deadline)
            conversation, params = self.limits.checked(prompt, messages, context, options, record)
            # before the queue, so one key cannot fill it either
            grant = self.quotas.admit(context.key, params.max_tokens, self._serves_remote)
            async with self._admission.slot(deadline), self._model.lease(deadline) as active:
                self._check_named(context, active)
                answer = await open_answer(
                    self._answering(active), conversation, params, self._policy, deadline, record
                )
                async with answer:
                    mirror = self.shadow.offer(record, conversation, params)
                    splitter = IntentSplitter(self.intents)
                    reply: list[str] = []
                    async for delta in reply_deltas(answer, splitter, streamed, record, deadline):
                        reply.append(delta)
                        if streamed:
                            yield StreamEvent(record.request_id, delta, model=record.model)
                    record.intent = splitter.intent
                    record.end()
                if record.fallback_from is None:
                    self._model.answered(active)
            result = GenerateResult.of(record, "".join(reply), answer.finish)
            yield StreamEvent(record.request_id, result=result, model=record.model)
        except BaseException as exc:
            error = recorded_failure(exc, record, deadline)
            if error is exc:
                raise
            raise error from exc
        finally:
            if grant is not None:  # no usage after tokens came: it keeps all it took
                usage = record.usage
                cut = record.first_token_at is not None and not usage.completion_tokens
                grant.settle(None if cut else usage.completion_tokens, usage.cost_usd)
            record.commit()
            self.drain.leave(deadline)
            if mirror is not None:
                mirror.live_done()

    @staticmethod
    def _check_named(context: RequestContext, active: Adapter) -> None:
        """A request that names a model is answered by that model only."""
        if context.model is not None and context.model != active.info.name:
            raise ModelNotActive(
                f"model {context.model!r} is registered but {active.info.name!r} is the "
                "active model; name it, or none, or switch with POST /switch (admin)",
                {"active": active.info.name},
            )

    def _answering(self, active: Adapter) -> list[Adapter | Loaded]:
        """Who may answer, in order: the active model, then FALLBACK_MODEL if it is another."""
        if self._fallback is not None and self._fallback.name != active.info.name:
            return [active, self._fallback]
        return [active]
