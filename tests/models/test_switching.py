"""The active model and its hot switch, on in-memory models."""

from __future__ import annotations

import asyncio

import pytest

from app.banking.intents import IntentSet
from app.errors import ModelNotFound, ModelUnavailable, SwitchInProgress
from app.models.loaded import LoadedAdapters
from app.models.registry import build_registry
from app.models.switching import ActiveModel, SwitchResult
from app.telemetry.metrics import Metrics
from tests.conftest import SettingsFactory
from tests.memory import Memory

pytestmark = pytest.mark.anyio


async def _active(
    settings: SettingsFactory, mode: str = "overlap"
) -> tuple[ActiveModel, Metrics, LoadedAdapters]:
    metrics, loaded = Metrics(), LoadedAdapters(IntentSet.load())
    registry = build_registry(settings())
    model = ActiveModel(registry, loaded, mode, metrics)  # type: ignore[arg-type]
    await model.start("mem")
    return model, metrics, loaded


async def test_overlap_swaps_at_once_and_closes_the_old_model_after_its_requests(
    memory_settings: SettingsFactory, memory: Memory
) -> None:
    model, metrics, model_set = await _active(memory_settings)
    async with model.lease() as old:
        result = await model.switch("mem-b")
        async with model.lease() as new:
            assert (old.info.name, new.info.name) == ("mem", "mem-b")
        await asyncio.sleep(0)  # one loop turn: the close task starts, and waits for the lease
        assert not memory.latest("mem").closed
    await model.close()
    await model_set.close()  # waits for the background close of the old model too
    assert result == SwitchResult("mem", "mem-b", result.load_ms)
    assert memory.latest("mem").closed
    assert metrics.registry.get_sample_value("bankllm_model_switches_total", {"result": "ok"}) == 1


async def test_drain_first_holds_new_requests_until_the_new_model_serves(
    memory_settings: SettingsFactory, memory: Memory
) -> None:
    model, _, _ = await _active(memory_settings, "drain_first")
    lease = model.lease()
    await lease.__aenter__()
    switching = asyncio.create_task(model.switch("mem-b"))
    await model.until_switching()

    async def newcomer() -> str:
        async with model.lease() as adapter:
            return adapter.info.name

    waiting = asyncio.create_task(newcomer())
    with pytest.raises(SwitchInProgress):
        await model.switch("mem")
    await asyncio.sleep(0)  # one loop turn for the switch and the newcomer to go as far as they may
    assert not memory.latest("mem").closed
    assert model.name == "mem"  # the old model stays active until its request ends
    await lease.__aexit__(None, None, None)  # the old model's last request ends
    assert (await switching).active == "mem-b"
    assert await waiting == "mem-b"
    assert memory.adapters["mem"][0].closed
    await model.close()


@pytest.mark.parametrize("mode", ["overlap", "drain_first"])
async def test_a_model_that_fails_to_load_leaves_the_old_one_serving(
    memory_settings: SettingsFactory, memory: Memory, mode: str
) -> None:
    model, metrics, _ = await _active(memory_settings, mode)
    with pytest.raises(ModelUnavailable, match="'broken' failed to load"):
        await model.switch("broken")
    async with model.lease() as adapter:
        assert adapter.info.name == "mem"
    await model.close()
    failed = metrics.registry.get_sample_value("bankllm_model_switches_total", {"result": "failed"})
    assert failed == 1


async def test_switching_to_the_active_model_or_an_unknown_one(
    memory_settings: SettingsFactory, memory: Memory
) -> None:
    model, _, _ = await _active(memory_settings)
    same = await model.switch("mem")
    with pytest.raises(ModelNotFound) as unknown:
        await model.switch("nope")
    await model.close()
    assert same == SwitchResult("mem", "mem", 0.0)
    assert len(memory.adapters["mem"]) == 1
    names = ["broken", "custom", "gemini", "mem", "mem-away", "mem-b", "qlora", "remote"]
    assert unknown.value.details == {"models": names}
