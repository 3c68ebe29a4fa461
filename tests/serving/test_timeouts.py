"""The request path's timeouts: asyncio.timeout_at's semantics on one ticking wheel a loop."""

from __future__ import annotations

import asyncio
import gc
import math
import weakref

import pytest
import uvloop

from app.serving import timeouts

pytestmark = pytest.mark.anyio


async def test_a_block_still_running_at_its_time_is_cut_with_timeout_error_never_early() -> None:
    loop = asyncio.get_running_loop()
    for seconds in (0.001, 0.004, 0.009, 0.01, 0.011, 0.015, 0.02, 0.03):
        when = loop.time() + seconds
        with pytest.raises(TimeoutError):
            async with timeouts.timeout_at(when) as timeout:
                await asyncio.Event().wait()
        assert loop.time() >= when
        assert timeout.expired()
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    assert timeouts.pending() == 0


async def test_a_block_that_ends_in_time_leaves_nothing_on_the_wheel() -> None:
    loop = asyncio.get_running_loop()
    async with timeouts.timeout_at(loop.time() + 30) as timeout:
        assert timeouts.pending() == 1
        await asyncio.sleep(0)
    assert not timeout.expired()
    assert timeouts.pending() == 0
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_one_already_due_fires_on_the_next_turn_of_the_loop() -> None:
    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutError):
        async with timeouts.timeout_at(loop.time() - 1):
            await asyncio.sleep(0)  # one turn: asyncio's own timeout cuts it there too
    async with timeouts.timeout_at(loop.time() - 1) as timeout:
        pass  # nothing awaited: nothing to cut
    await asyncio.sleep(0)  # the turn it was due on: the block is gone, so nothing fires
    assert not timeout.expired()
    async with timeouts.timeout_at(loop.time() - 1) as taken_back:
        taken_back.reschedule(None)  # asyncio's: no timeout after all
        await asyncio.sleep(0)
        taken_back.reschedule(loop.time() + 30)
        await asyncio.sleep(0)
    assert not taken_back.expired()


async def test_a_time_at_infinity_is_never() -> None:
    async with timeouts.timeout_at(math.inf) as never:
        assert timeouts.pending() == 0
        await asyncio.sleep(0)
    assert not never.expired()


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    loop = asyncio.get_running_loop()
    entered = asyncio.Event()
    seen: list[bool] = []

    async def waits() -> None:
        async with timeouts.timeout_at(loop.time() + 30) as timeout:
            entered.set()
            try:
                await asyncio.Event().wait()
            finally:
                seen.append(timeout.expired())

    task = asyncio.create_task(waits())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == [False]
    assert timeouts.pending() == 0


async def test_reschedule_sets_clears_and_moves_the_time() -> None:
    loop = asyncio.get_running_loop()
    async with timeouts.timeout_at(None) as never:
        await asyncio.sleep(0)
        at = loop.time() + 30
        never.reschedule(at)
        assert (never.when(), timeouts.pending()) == (at, 1)
        never.reschedule(None)
        assert timeouts.pending() == 0
    assert not never.expired()
    cut = timeouts.timeout_at(loop.time() + 30)

    async def cut_short() -> None:
        async with cut:
            cut.reschedule(loop.time())  # now: a deadline cut short (a stop's grace ran out)
            await asyncio.Event().wait()

    with pytest.raises(TimeoutError):
        await cut_short()
    assert cut.expired()
    with pytest.raises(RuntimeError, match="inside its block"):
        cut.reschedule(None)


async def test_many_in_one_tick_fire_together_each_in_its_own_task() -> None:
    loop = asyncio.get_running_loop()
    when = loop.time() + 0.03

    async def waits(seconds: float | None) -> str:
        try:
            async with timeouts.timeout_at(when if seconds is None else loop.time() + seconds):
                await asyncio.Event().wait()
        except TimeoutError:
            return "timed out"
        return "ended"  # never: the wait has no end

    outcomes = await asyncio.gather(*(waits(None) for _ in range(50)), waits(0.005))
    assert outcomes == ["timed out"] * 51
    assert timeouts.pending() == 0


async def test_a_timeout_is_entered_once() -> None:
    timeout = timeouts.timeout_at(None)
    async with timeout:
        pass
    with pytest.raises(RuntimeError, match="entered once"):
        async with timeout:
            pass


def test_each_event_loop_has_its_own_wheel_uvloop_s_too() -> None:
    async def times_out() -> bool:
        loop = asyncio.get_running_loop()
        try:
            async with timeouts.timeout_at(loop.time() + 0.01):
                await asyncio.Event().wait()
        except TimeoutError:
            return timeouts.pending() == 0
        return False

    assert asyncio.run(times_out())
    assert uvloop.run(times_out())  # a new loop (the server's kind): a wheel of its own


def test_a_finished_loop_is_not_kept_alive_by_its_wheel() -> None:
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def times_out() -> None:
        loop = asyncio.get_running_loop()
        loops.append(weakref.ref(loop))
        with pytest.raises(TimeoutError):
            async with timeouts.timeout_at(loop.time() + 0.001):
                await asyncio.Event().wait()

    asyncio.run(times_out())  # ends with the wheel's next tick still scheduled
    uvloop.run(times_out())
    gc.collect()
    assert [ref() for ref in loops] == [None, None]
