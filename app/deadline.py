"""One request's deadline: REQUEST_TIMEOUT_S from its arrival, queue wait included."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from types import TracebackType
from typing import TypeVar

from app.errors import GenerationTimeout

T = TypeVar("T")


class Deadline:
    """Bounds every wait of a request. A stream's waits are bounded one by one (between them
    the caller sends bytes, which the deadline must not cut); a whole answer read in one go
    enters it once (`async with deadline:`), and its waits then cost no timer each."""

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self.at = asyncio.get_running_loop().time() + timeout_s
        self._whole: asyncio.Timeout | None = None

    async def bound(self, awaitable: Awaitable[T]) -> T:
        """Await within the deadline; TimeoutError when it passes."""
        if self._whole is not None:
            return await awaitable
        async with asyncio.timeout_at(self.at):
            return await awaitable

    @property
    def passed(self) -> bool:
        """Whether the deadline's time has come (a TimeoutError is then ours)."""
        return asyncio.get_running_loop().time() >= self.at

    @property
    def expired(self) -> bool:
        """Whether a cancellation is the deadline's (inside `async with`), not the caller's."""
        return self._whole is not None and self._whole.expired()

    def error(self) -> GenerationTimeout:
        return GenerationTimeout(f"no answer within REQUEST_TIMEOUT_S={self.timeout_s:g} s")

    async def __aenter__(self) -> Deadline:
        """One timer for everything awaited inside; GenerationTimeout when it fires. (A class,
        not a generator-based context manager: it runs once per request.)"""
        self._whole = asyncio.timeout_at(self.at)
        await self._whole.__aenter__()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        whole, self._whole = self._whole, None
        assert whole is not None
        try:
            await whole.__aexit__(kind, error, traceback)
        except TimeoutError as exc:
            raise self.error() from exc
