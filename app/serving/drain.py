"""A graceful stop's two phases: the requests in flight finish while new ones are refused,
for SHUTDOWN_GRACE_S; then whatever still runs is cut, each request with its own error."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from app.errors import Draining, ShutDown
from app.serving.deadline import Deadline

logger = logging.getLogger(__name__)
AFTER_CUT_S = 5.0  # how long the cut requests get to end (a slow reader may hold its send)


class Drain:
    def __init__(self, grace_s: float):
        self.grace_s = grace_s
        self._since: float | None = None  # monotonic time the stop began
        self._live: set[Deadline] = set()
        self._idle = asyncio.Event()

    @property
    def draining(self) -> bool:
        return self._since is not None

    @property
    def in_flight(self) -> int:
        return len(self._live)

    def grace_left_s(self) -> float:
        assert self._since is not None, "not draining"
        return max(0.0, self._since + self.grace_s - time.monotonic())

    def admit(self, deadline: Deadline) -> None:
        """Count a request in, or refuse it with Draining once the stop has begun."""
        if self._since is not None:
            raise Draining()
        self._live.add(deadline)

    def leave(self, deadline: Deadline) -> None:
        self._live.discard(deadline)
        if not self._live:
            self._idle.set()

    async def run(self) -> int:
        """Refuse new requests, wait up to the grace period for those in flight, cut the rest
        and give them AFTER_CUT_S to end. Returns how many were cut."""
        if self._since is None:
            self._since = time.monotonic()
            logger.warning(
                "draining: %d request(s) in flight, %g s to finish", len(self._live), self.grace_s
            )
        cut = 0
        if self._live:
            self._idle.clear()
            try:
                async with asyncio.timeout(self.grace_left_s()):
                    await self._idle.wait()
            except TimeoutError:
                cut = self.cut()
        if self._live:  # the server cancels any still left after this
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(AFTER_CUT_S):
                    await self._idle.wait()
        return cut

    def cut(self) -> int:
        """End every request in flight now (the grace ran out, or a second signal came)."""
        live = list(self._live)
        if live:
            logger.warning("stopping now: %d request(s) cut", len(live))
        for deadline in live:
            deadline.cut(ShutDown(self.grace_s))
        return len(live)
