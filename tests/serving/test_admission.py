"""Admission: at most MAX_CONCURRENCY at once, MAX_QUEUE waiting, 429 with Retry-After beyond."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry, Gauge

from app.errors import QueueFull
from app.serving.admission import Admission

pytestmark = pytest.mark.anyio


def _admission(concurrency: int, queue: int) -> tuple[Admission, CollectorRegistry]:
    registry = CollectorRegistry()
    return Admission(concurrency, queue, Gauge("depth", "queue depth", registry=registry)), registry


async def test_requests_beyond_the_slots_wait_and_beyond_the_queue_are_refused() -> None:
    admission, registry = _admission(concurrency=1, queue=1)
    order: list[str] = []
    async with admission.slot():
        order.append("first")

        async def second() -> None:
            async with admission.slot():
                order.append("second")

        waiting = asyncio.create_task(second())
        await admission.until_waiting(1)
        assert (admission.waiting, registry.get_sample_value("depth")) == (1, 1)
        with pytest.raises(QueueFull) as refused:
            async with admission.slot():
                order.append("never")
    await waiting
    assert order == ["first", "second"]
    assert refused.value.headers == {"Retry-After": "2"}  # two rounds of the 1 s default
    assert (admission.waiting, registry.get_sample_value("depth")) == (0, 0)


async def test_retry_after_follows_the_observed_latency() -> None:
    admission, _ = _admission(concurrency=4, queue=0)
    for _ in range(50):
        admission.observe_latency(10.0)
    assert admission.retry_after_s() == 3  # (0 waiting + 1) / 4 slots x ~10 s, rounded up
