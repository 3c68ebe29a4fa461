"""One deadline per request: a stream's waits one by one, a whole answer under one timer."""

from __future__ import annotations

import asyncio

import pytest

from app.errors import GenerationTimeout
from app.serving.deadline import Deadline

pytestmark = pytest.mark.anyio


async def test_a_bounded_wait_times_out_at_the_deadline() -> None:
    deadline = Deadline(0.01)
    assert await deadline.bound(asyncio.sleep(0, "done")) == "done"
    with pytest.raises(TimeoutError):
        await deadline.bound(asyncio.Event().wait())
    assert deadline.passed


async def test_a_whole_answer_runs_under_one_timer_that_tells_its_cancellation_apart() -> None:
    deadline = Deadline(0.01)
    seen: list[bool] = []

    async def answer() -> None:
        async with deadline:
            try:
                await deadline.bound(asyncio.Event().wait())  # no timer of its own here
            except asyncio.CancelledError:
                seen.append(deadline.expired)
                raise

    with pytest.raises(GenerationTimeout, match=r"REQUEST_TIMEOUT_S=0\.01 s"):
        await answer()
    assert seen == [True]
