"""`asyncio.timeout_at` for the request path, with one ticking timer per event loop in place of
one loop timer per timeout.

On uvloop a timer costs ~2.6 µs to arm and cancel (`asyncio.timeout_at` ~4.6 µs in all), and a
request had two (its body's and its deadline's) and a stream one a token; here a timeout is a
dict entry in the slot of the tick that falls due after it (~1 µs in all). The price is
resolution: a timeout fires up to RESOLUTION_S after its time, never before it, which for a
body's 30 s or a request's REQUEST_TIMEOUT_S is nothing. One already due when it is set fires
on the loop's next turn, as asyncio's does.

The semantics are asyncio's: when the time comes the task is cancelled, and leaving the block
turns that cancellation, and only that one, into TimeoutError."""

from __future__ import annotations

import asyncio
import math
import weakref
from types import TracebackType
from typing import Any

RESOLUTION_S = 0.01  # the tick: how late a timeout may fire


class Timeout:
    """The part of `asyncio.Timeout` the service uses: `async with`, `reschedule`, `expired`."""

    __slots__ = ("_cancelling", "_entered", "_expiring", "_slot", "_task", "_wheel", "_when")

    def __init__(self, when: float | None) -> None:
        self._when = when
        self._entered = False
        self._expiring = False  # its time came: the task was cancelled for it
        self._task: asyncio.Task[Any] | None = None
        self._cancelling = 0  # the task's cancellations pending when the block began
        self._wheel: _Wheel | None = None
        self._slot: int | None = None  # its slot on the wheel while it waits there

    def when(self) -> float | None:
        return self._when

    def expired(self) -> bool:
        """Whether its time came inside the block."""
        return self._expiring

    def reschedule(self, when: float | None) -> None:
        """Fire at `when` instead (None: never). Only inside the block, before it fires."""
        if self._wheel is None or self._task is None or self._expiring:
            raise RuntimeError("a Timeout is rescheduled only inside its block, before it fires")
        self._when = when
        if self._slot is not None:
            self._wheel.remove(self, self._slot)
            self._slot = None
        if when is not None:
            self._slot = self._wheel.add(self, when)

    async def __aenter__(self) -> Timeout:
        if self._entered:
            raise RuntimeError("a Timeout is entered once")
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a Timeout is used inside a task")
        self._entered = True
        self._task = task
        self._cancelling = task.cancelling()
        self._wheel = _wheel(asyncio.get_running_loop())
        if self._when is not None:
            self._slot = self._wheel.add(self, self._when)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._slot is not None:
            assert self._wheel is not None
            self._wheel.remove(self, self._slot)
            self._slot = None
        self._wheel = None  # nothing reschedules it now
        assert self._task is not None
        if (
            self._expiring
            and self._task.uncancel() <= self._cancelling
            and kind is asyncio.CancelledError
        ):
            raise TimeoutError from error  # our cancellation, and no other since

    def _fire(self) -> None:
        """The wheel's (or the loop's, when it was due at once): cancel the task."""
        self._slot = None
        if self._wheel is not None and not self._expiring:  # still inside its block
            assert self._task is not None
            self._expiring = True
            self._task.cancel()


def timeout_at(when: float | None) -> Timeout:
    """Like `asyncio.timeout_at`: TimeoutError when the block is still running at `when` (the
    loop's clock), at most RESOLUTION_S late."""
    return Timeout(when)


def pending() -> int:
    """How many timeouts wait on this loop's wheel (for tests and tools)."""
    return _wheel(asyncio.get_running_loop()).pending


class _Wheel:
    """One loop's pending timeouts, by the tick they fall due in: slot n holds those due in
    ((n-1)·R, n·R], fired by the first tick at or after n·R. It ticks only while it holds some."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._slots: dict[int, dict[Timeout, None]] = {}
        self._next = 0  # the first slot not yet fired
        self._ticking: asyncio.TimerHandle | None = None

    @property
    def pending(self) -> int:
        return sum(len(waiting) for waiting in self._slots.values())

    @property
    def ticking(self) -> bool:
        return self._ticking is not None

    def add(self, timeout: Timeout, when: float) -> int | None:
        """Put it in its slot (the slot's number back), or fire it on the next turn when its
        time has come already (None back)."""
        if when <= self._loop.time():
            self._loop.call_soon(timeout._fire)
            return None
        if self._ticking is None:  # empty: nothing between the last tick and now to fire
            self._next = math.floor(self._loop.time() / RESOLUTION_S) + 1
            self._ticking = self._loop.call_at(self._next * RESOLUTION_S, self._tick)
        slot = max(math.ceil(when / RESOLUTION_S), self._next)
        waiting = self._slots.get(slot)
        if waiting is None:
            waiting = self._slots[slot] = {}
        waiting[timeout] = None
        return slot

    def remove(self, timeout: Timeout, slot: int) -> None:
        waiting = self._slots.get(slot)
        if waiting is not None:
            waiting.pop(timeout, None)
            if not waiting:
                del self._slots[slot]

    def _tick(self) -> None:
        now = math.floor(self._loop.time() / RESOLUTION_S)
        due: list[Timeout] = []
        for slot in range(self._next, now + 1):
            if (waiting := self._slots.pop(slot, None)) is not None:
                due.extend(waiting)
        self._next = max(self._next, now + 1)
        for timeout in due:
            timeout._fire()
        self._ticking = None
        if self._slots:
            self._ticking = self._loop.call_at(self._next * RESOLUTION_S, self._tick)


_wheels: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Wheel] = weakref.WeakKeyDictionary()


def _wheel(loop: asyncio.AbstractEventLoop) -> _Wheel:
    found = _wheels.get(loop)
    if found is None:
        found = _wheels[loop] = _Wheel(loop)
    return found
