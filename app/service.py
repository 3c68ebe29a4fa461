"""One running service: its parts built once from settings, started and closed together, and the
request path (`Pipeline`) that walks through them. Routes take the part they need by a typed
dependency (`app.api.deps`); none reaches through the request path for another."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from app.backends.protocol import ModelInfo
from app.banking.intents import IntentSet
from app.errors import Draining, ModelDegraded, ModelUnavailable, ServiceError
from app.models.admin import Admin
from app.models.gate import Requirements
from app.models.loaded import LoadedAdapters
from app.models.registry import ModelStatus, build_registry, model_statuses
from app.models.shadow import Shadow, ShadowOptions
from app.models.startup import Startup
from app.models.switching import ActiveModel, SwitchResult
from app.serving.drain import Drain
from app.serving.pipeline import Pipeline
from app.settings import Settings
from app.telemetry.audit import OPEN, Audit
from app.telemetry.benchlog import BenchmarkLog
from app.telemetry.metrics import Metrics
from app.telemetry.pseudonyms import warn_if_per_process

logger = logging.getLogger(__name__)
# an absolute path in a message: a public probe names the file, not the server's folders
_PATH = re.compile(r"(?<![\w.~:/-])/(?:[^\s/'\":]+/)+([^\s/'\":]+)")


def _unplaced(text: str | None) -> str | None:
    return None if text is None else _PATH.sub(r"…/\1", text)


@dataclass(frozen=True)
class Readiness:
    """What /health says of a service that can take requests."""

    model: ModelInfo
    problem: str | None  # why the active model cannot serve now, if it cannot
    fallback: str | None  # the model that answers for it meanwhile
    log_problem: str | None  # why request rows are being lost, if they are


class Service:
    def __init__(
        self,
        settings: Settings,
        intents: IntentSet,
        metrics: Metrics | None = None,
        log: BenchmarkLog | None = None,  # a replica's own file (Ray Serve); BENCHMARK_LOG's
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.registry = build_registry(settings)
        self.log = log or BenchmarkLog(
            settings.benchmark_log,
            settings.benchmark_every,
            self.metrics.log_write_errors.inc,
            priority=settings.recommend,
        )
        self._loaded = LoadedAdapters(intents)
        self.model = ActiveModel(self.registry, self._loaded, settings.switch_mode, self.metrics)
        self.shadow = Shadow(
            self._loaded, intents, self.metrics, self.log, ShadowOptions.of(settings)
        )
        audit = Audit(settings.audit_path, self.metrics.audit_write_errors.inc, self.log.stamp)
        self.admin = Admin(
            self.registry, self.model, self._loaded, self.shadow, self.log, intents, audit
        )
        self.startup = Startup(  # ACTIVE_MODEL at start, retried in the background if it fails
            self.model, self.metrics, settings.start_retry_initial_s, settings.start_retry_max_s
        )
        self.drain = Drain(settings.shutdown_grace_s)  # the graceful stop (SIGTERM)
        self.pipeline = Pipeline(
            settings,
            intents,
            self.registry,
            self.model,
            metrics=self.metrics,
            log=self.log,
            shadow=self.shadow,
            drain=self.drain,
        )
        self.started_at = 0  # Unix time of start(): the `created` of /v1/models

    async def start(self) -> None:
        """Open the log and load ACTIVE_MODEL (and FALLBACK_MODEL, SHADOW_MODEL). A model that
        fails to load is logged, and the service runs without it (readiness 503) until an
        admin switches."""
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
        started = "done" if self.model.info else "failed"  # then retried in the background
        self.admin.audit.write("start", "service", started, None, self.settings.active_model)
        if (fallback := self.settings.fallback_model) is not None:
            try:
                self.pipeline.answer_with_fallback(
                    await self._loaded.acquire(self.registry[fallback])
                )
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
        await self.model.close()
        await self._loaded.close()
        await asyncio.to_thread(self.log.close)
        self.admin.audit.close()

    @property
    def active(self) -> ModelInfo | None:
        return self.model.info

    def models(self) -> list[ModelStatus]:
        return model_statuses(self.registry, self.model.info)

    def benchmark_summary(self) -> dict[str, Any]:
        """Per-model figures from the benchmark log (blocks until pending rows are written)."""
        return self.log.summary()

    async def switch(
        self, name: str, require: Requirements | None = None, by: str = OPEN
    ) -> SwitchResult:
        """Hot-switch the active model; with `require`, only a candidate that meets it. `by`
        is the admin key's id, for the audit trail. Refused once the service drains."""
        if self.drain.draining:
            to = name if name in self.registry else None
            error = Draining()
            self.admin.audit.write(
                "switch", by, "failed", self.model.name, to, error_type=error.type
            )
            raise error
        return await self.admin.switch(name, require, by)

    async def until_in_flight(self, count: int) -> None:
        """Resolves once `count` requests are with the active model at the same time."""
        current = self.model.current
        if current is None:
            raise RuntimeError("no model is loaded")
        await current.until_in_flight(count)

    def readiness(self) -> Readiness:
        """Whether the service can take requests: raises why it cannot (draining, no model,
        the model failing with no fallback). One degraded only by a failed warm-up at start
        is ready: it takes requests, and the first answer clears it. Messages name files,
        never the server's folders: a public probe reads them."""
        if self.drain.draining:
            left = round(self.drain.grace_left_s(), 1)
            raise Draining(in_flight=self.drain.in_flight, grace_left_s=left)
        active = self.model.info
        if active is None and (retry := self.startup.retry) is not None:
            details = {"model": retry.model, "attempts": retry.attempts}
            details["next_attempt_in_s"] = retry.next_attempt_in_s()
            why = _unplaced(retry.describe())
            raise ModelUnavailable(f"{retry.model} is not loaded: {why}", details)
        if active is None:
            raise ModelUnavailable("no model is loaded")
        fallback = self.pipeline.fallback
        if (failing := _unplaced(self.model.failing)) is not None and fallback is None:
            raise ModelDegraded(failing, {"model": active.name, "backend": active.backend})
        problem = _unplaced(self.model.problem)
        answering = fallback if problem else None
        return Readiness(active, problem, answering, _unplaced(self.log.problem))
