"""ACTIVE_MODEL at start: loaded at once, or tried again in the background with capped
exponential backoff until it loads or an admin switches to a model. A transient fault at boot
must not become a permanent outage."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from app.errors import ServiceError
from app.models.switching import ActiveModel
from app.telemetry.metrics import Metrics

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StartRetry:
    """ACTIVE_MODEL failed to load at start; the pipeline tries again in the background."""

    model: str
    reason: str
    attempts: int
    next_in_s: float
    since: float = field(default_factory=time.monotonic)  # when the next wait began

    def failed_again(self, reason: str, next_in_s: float) -> StartRetry:
        return StartRetry(self.model, reason, self.attempts + 1, next_in_s)

    def next_attempt_in_s(self) -> float:
        return max(0.0, round(self.since + self.next_in_s - time.monotonic(), 1))

    def describe(self) -> str:
        return (
            f"{self.reason}; {self.attempts} attempt(s) so far, the next in "
            f"{self.next_attempt_in_s():g} s (or load one with POST /switch)"
        )


class Startup:
    def __init__(self, model: ActiveModel, metrics: Metrics, initial_s: float, max_s: float):
        self._model = model
        self._metrics = metrics
        self._initial_s = initial_s
        self._max_s = max_s
        self.retry: StartRetry | None = None  # set while ACTIVE_MODEL is retried
        self._task: asyncio.Task[None] | None = None
        self._done = asyncio.Event()  # set once the first model is installed, or retries end
        self._attempted = asyncio.Condition()  # notified after each background attempt

    async def start(self, name: str) -> None:
        try:
            await self._model.start(name)
        except ServiceError as exc:
            self._metrics.load_attempts.labels(name, "failed").inc()
            logger.error("no model serves: %s; trying again in the background", exc.message)
            self.retry = StartRetry(name, exc.message, 1, self._initial_s)
            self._task = asyncio.create_task(self._keep_trying(self.retry))
            return
        self._metrics.load_attempts.labels(name, "ok").inc()
        self._done.set()

    async def until_done(self) -> None:
        """Resolves once ACTIVE_MODEL has loaded, or a switch made the retries pointless."""
        await self._done.wait()

    async def until_retried(self) -> None:
        """Resolves after the next background attempt, whatever its result."""
        if self._task is None or self._task.done():
            return
        async with self._attempted:
            await self._attempted.wait()

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._done.set()

    async def _keep_trying(self, retry: StartRetry) -> None:
        while True:
            await asyncio.sleep(retry.next_in_s)  # the backoff itself, not a wait on a state
            try:
                installed = await self._model.start(retry.model)
            except ServiceError as exc:
                self._metrics.load_attempts.labels(retry.model, "failed").inc()
                wait = min(retry.next_in_s * 2, self._max_s)
                self.retry = retry = retry.failed_again(exc.message, wait)
                logger.warning("%s still fails to load: %s", retry.model, retry.describe())
                await self._notify()
                continue
            if installed:
                self._metrics.load_attempts.labels(retry.model, "ok").inc()
                logger.info("%s loaded after %d attempts", retry.model, retry.attempts + 1)
            self.retry = None
            self._done.set()
            await self._notify()
            return

    async def _notify(self) -> None:
        async with self._attempted:
            self._attempted.notify_all()
