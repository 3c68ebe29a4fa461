"""Admission control: at most MAX_CONCURRENCY generations, MAX_QUEUE waiting, 429 beyond."""

from __future__ import annotations

import asyncio
import math

from prometheus_client import Gauge

from app.errors import QueueFull
from app.serving.deadline import Deadline


class Admission:
    def __init__(self, max_concurrency: int, max_queue: int, queue_depth: Gauge):
        self._slots = asyncio.Semaphore(max_concurrency)
        self._max_concurrency = max_concurrency
        self._max_queue = max_queue
        self._waiting = 0
        # read when scraped, rather than set twice by every request
        queue_depth.set_function(lambda: self._waiting)
        self._mean_latency_s = 1.0  # moving average, for Retry-After
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    @property
    def waiting(self) -> int:
        return self._waiting

    async def until_waiting(self, count: int) -> None:
        """Resolves once `count` requests wait in the queue (for tests and tools)."""
        if self._waiting < count:
            future = asyncio.get_running_loop().create_future()
            self._waiters.append((count, future))
            await future

    def observe_latency(self, seconds: float) -> None:
        self._mean_latency_s += 0.1 * (seconds - self._mean_latency_s)

    def retry_after_s(self) -> int:
        """Seconds until the queue has likely moved by one place per waiting request."""
        rounds = (self._waiting + 1) / self._max_concurrency
        return max(1, math.ceil(rounds * self._mean_latency_s))

    def slot(self, deadline: Deadline | None = None) -> _Slot:
        """Hold a generation slot; waits in the queue (within `deadline`, if given), or raises
        QueueFull when it is full."""
        return _Slot(self, deadline)

    async def acquire(self) -> None:
        if self._slots.locked() and self._waiting >= self._max_queue:
            raise QueueFull(
                f"the server is at capacity ({self._max_concurrency} running, "
                f"{self._waiting} queued); retry later",
                self.retry_after_s(),
            )
        self._waiting += 1
        if self._waiters:
            for waiter in [w for w in self._waiters if w[0] <= self._waiting]:
                self._waiters.remove(waiter)
                waiter[1].set_result(None)
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1

    def release(self) -> None:
        self._slots.release()


class _Slot:
    """One request's slot (a class, not a generator-based context manager: hot path)."""

    __slots__ = ("_admission", "_deadline")

    def __init__(self, admission: Admission, deadline: Deadline | None):
        self._admission = admission
        self._deadline = deadline

    async def __aenter__(self) -> None:
        if self._deadline is None:
            await self._admission.acquire()
        else:
            await self._deadline.bound(self._admission.acquire())

    async def __aexit__(self, *exc_info: object) -> None:
        self._admission.release()
