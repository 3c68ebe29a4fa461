"""One request's deadline: REQUEST_TIMEOUT_S from its arrival, queue wait included."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from types import TracebackType
from typing import TypeVar

from app.errors import GenerationTimeout, ServiceError

T = TypeVar("T")


class Deadline:
    """Bounds every wait of a request. A stream's waits are bounded one by one (between them
    the caller sends bytes, which the deadline must not cut); a whole answer read in one go
    is bounded once (`async with deadline:`).

    `cut(error)` brings the deadline to now (a stop whose grace ran out): the wait in progress,
    or the next one, ends, and `error()` is then that error."""

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self.at = asyncio.get_running_loop().time() + timeout_s
        self._whole: asyncio.Timeout | None = None
        self._wait: asyncio.Timeout | None = None  # the stream's wait in progress
        self._cut: ServiceError | None = None

    def bound(self, awaitable: Awaitable[T]) -> Awaitable[T]:
        """`awaitable` within the deadline: TimeoutError when it passes. Inside `async with
        deadline:` it is `awaitable` itself: the whole answer's timeout bounds it already."""
        if self._whole is not None:
            return awaitable
        return self._bounded(awaitable)

    async def _bounded(self, awaitable: Awaitable[T]) -> T:
        async with asyncio.timeout_at(self.at) as self._wait:
            try:
                return await awaitable
            finally:
                self._wait = None

    def cut(self, error: ServiceError) -> None:
        """End the request now, with `error` as the reason."""
        self._cut = error
        self.at = asyncio.get_running_loop().time()
        for timer in (self._whole, self._wait):
            if timer is not None and not timer.expired():
                timer.reschedule(self.at)

    @property
    def passed(self) -> bool:
        """Whether the deadline's time has come (a TimeoutError is then ours)."""
        return asyncio.get_running_loop().time() >= self.at

    @property
    def expired(self) -> bool:
        """Whether a cancellation is the deadline's (inside `async with`), not the caller's."""
        return self._whole is not None and self._whole.expired()

    def error(self) -> ServiceError:
        if self._cut is not None:
            return self._cut
        return GenerationTimeout(f"no answer within REQUEST_TIMEOUT_S={self.timeout_s:g} s")

    async def __aenter__(self) -> Deadline:
        """One timeout for everything awaited inside; GenerationTimeout when it fires."""
        self._whole = asyncio.timeout_at(self.at)
        await self._whole.__aenter__()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        whole = self._whole
        assert whole is not None
        try:
            await whole.__aexit__(kind, error, traceback)
        except TimeoutError as exc:
            raise self.error() from exc
        finally:
            self._whole = None
