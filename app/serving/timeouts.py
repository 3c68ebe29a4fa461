"""`asyncio.timeout_at` for the request path, with one ticking timer per event loop in place of
one loop timer per timeout.

On uvloop a timer costs ~2.6 µs to arm and cancel (`asyncio.timeout_at` ~4.6 µs in all), and a
request had two (its body's and its deadline's) and a stream one a token; here a timeout is a
dict entry in the slot of the tick that falls due after it (~1 µs in all). The price is
resolution: a timeout fires up to RESOLUTION_S after its time (plus however long the loop is
busy, as any timer), never before it, which for a body's 30 s or a request's REQUEST_TIMEOUT_S
is nothing. One already due when it is set fires on the loop's next turn, as asyncio's does;
one at infinity never.

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

    __slots__ = (
        "_cancelling",
        "_entered",
        "_expiring",
        "_slot",
        "_soon",
        "_task",
        "_wheel",
        "_when",
    )

    def __init__(self, when: float | None) -> None:
        self._when = when
        self._entered = False
        self._expiring = False  # its time came: the task was cancelled for it
        self._task: asyncio.Task[Any] | None = None
        self._cancelling = 0  # the task's cancellations pending when the block began
        self._wheel: _Wheel | None = None
        self._slot: int | None = None  # its slot on the wheel while it waits there
        self._soon: asyncio.Handle | None = None  # its firing on the next turn, when due at once

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
        self._disarm()
        self._arm()

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
        self._arm()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._disarm()
        self._wheel = None  # nothing reschedules it now
        assert self._task is not None
        if (
            self._expiring
            and self._task.uncancel() <= self._cancelling
            and kind is asyncio.CancelledError
        ):
            raise TimeoutError from error  # our cancellation, and no other since

    def _arm(self) -> None:
        """Into its slot on the wheel, or onto the loop's next turn when it is due already;
        a time of None or infinity is never."""
        when = self._when
        if when is None or when == math.inf:
            return
        assert self._wheel is not None
        loop = asyncio.get_running_loop()
        if when <= loop.time():
            self._soon = loop.call_soon(self._fire)
        else:
            self._slot = self._wheel.add(self, when)

    def _disarm(self) -> None:
        if self._slot is not None:
            assert self._wheel is not None
            self._wheel.remove(self, self._slot)
            self._slot = None
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None

    def _fire(self) -> None:
        """The wheel's, or the loop's when it was due at once: cancel the task, once the loop's
        clock says its time has come (a tick's arithmetic may be an ulp ahead: then the next
        tick), so `loop.time() >= when` holds for whoever asks why the task was cancelled."""
        self._slot = self._soon = None
        if self._wheel is None or self._expiring:  # out of its block, or fired already
            return
        if self._when is None or asyncio.get_running_loop().time() < self._when:
            self._arm()  # an ulp early: the next tick
            return
        assert self._task is not None
        self._expiring = True
        self._task.cancel()


def timeout_at(when: float | None) -> Timeout:
    """Like `asyncio.timeout_at`: TimeoutError when the block is still running at `when` (the
    loop's clock), up to RESOLUTION_S late (plus the loop's own delay), never early."""
    return Timeout(when)


def pending() -> int:
    """How many timeouts wait on this loop's wheel (for tests and tools)."""
    return _wheel(asyncio.get_running_loop()).pending


class _Wheel:
    """One loop's pending timeouts, by the tick they fall due in: slot n holds those due in
    ((n-1)·R, n·R], fired by the first tick at or after n·R. It ticks only while it holds some."""

    def __init__(self) -> None:
        # No reference to its loop, nor to the loop's timer handle: the wheel is the value of
        # its loop's entry in a weak dict, and a reference back would keep every loop alive.
        self._slots: dict[int, dict[Timeout, None]] = {}
        self._next = 0  # the first slot not yet fired
        self._ticking = False  # a tick is scheduled

    @property
    def pending(self) -> int:
        return sum(len(waiting) for waiting in self._slots.values())

    def add(self, timeout: Timeout, when: float) -> int:
        """Put it in the slot it falls due in (a finite time, after now); the slot's number."""
        if not self._ticking:  # empty: nothing between the last tick and now to fire
            loop = asyncio.get_running_loop()
            self._next = math.floor(loop.time() / RESOLUTION_S) + 1
            loop.call_at(self._next * RESOLUTION_S, self._tick)
            self._ticking = True
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
        loop = asyncio.get_running_loop()
        now = math.floor(loop.time() / RESOLUTION_S)
        due: list[Timeout] = []
        for slot in range(self._next, now + 1):
            if (waiting := self._slots.pop(slot, None)) is not None:
                due.extend(waiting)
        self._next = max(self._next, now + 1)
        for timeout in due:
            timeout._fire()
        self._ticking = bool(self._slots)
        if self._ticking:
            loop.call_at(self._next * RESOLUTION_S, self._tick)


_wheels: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Wheel] = weakref.WeakKeyDictionary()


def _wheel(loop: asyncio.AbstractEventLoop) -> _Wheel:
    found = _wheels.get(loop)
    if found is None:
        found = _wheels[loop] = _Wheel()
    return found
