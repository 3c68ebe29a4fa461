"""The shared set of loaded adapters: one load per name, warm-up through the stream, closed
after the last holder lets go and the last request is done."""

from __future__ import annotations

import asyncio

import pytest

from app.backends.protocol import Message
from app.banking.intents import IntentSet
from app.errors import ModelUnavailable
from app.models.loaded import LoadedAdapters
from app.models.registry import build_registry
from tests.conftest import SettingsFactory
from tests.memory import Memory

pytestmark = pytest.mark.anyio


async def test_one_load_per_name_closed_after_the_last_holder_and_request(
    memory_settings: SettingsFactory, memory: Memory
) -> None:
    spec = build_registry(memory_settings())["mem"]
    loaded = LoadedAdapters(IntentSet.load())
    first = await loaded.acquire(spec)
    second = await loaded.acquire(spec)
    assert first is second
    assert len(memory.adapters["mem"]) == 1
    async with first.lease():
        await loaded.release(first)
        await loaded.release(second)
        assert loaded.get("mem") is None  # a new acquire would load afresh
        await asyncio.sleep(0)  # one loop turn: the close task starts, and waits for the lease
        assert not memory.latest("mem").closed
    await loaded.close()
    assert memory.latest("mem").closed


async def test_the_warm_up_is_one_short_greedy_question_through_the_stream(
    memory_settings: SettingsFactory, memory: Memory
) -> None:
    loaded = LoadedAdapters(IntentSet.load())
    await loaded.acquire(build_registry(memory_settings())["mem"])
    adapter = memory.latest("mem")
    await loaded.close()
    assert adapter.received == [(Message("user", "Hello"),)]
    assert adapter.endings == ["exhausted"]


async def test_a_model_that_cannot_load_or_warm_up_is_unavailable_and_closed(
    memory_settings: SettingsFactory, memory: Memory
) -> None:
    registry = build_registry(memory_settings())
    loaded = LoadedAdapters(IntentSet.load())
    with pytest.raises(ModelUnavailable, match="model 'broken' failed to load: no weights"):
        await loaded.acquire(registry["broken"])
    memory.failures["mem"] = [ModelUnavailable("cold")]
    with pytest.raises(ModelUnavailable, match="model 'mem' failed its warm-up: cold"):
        await loaded.acquire(registry["mem"])
    assert memory.latest("broken").closed
    assert memory.latest("mem").closed
    assert loaded.get("mem") is None


async def test_until_in_flight_resolves_when_that_many_hold_the_adapter(
    memory_settings: SettingsFactory,
) -> None:
    loaded = LoadedAdapters(IntentSet.load())
    held = await loaded.acquire(build_registry(memory_settings())["mem"])
    async with held.lease(), held.lease():
        await held.until_in_flight(2)
        assert held.in_flight == 2
    assert (held.in_flight, held.idle.is_set()) == (0, True)
    await loaded.close()
