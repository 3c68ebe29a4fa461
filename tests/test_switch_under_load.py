"""/switch between two custom checkpoints while 20 requests are in flight: none may fail."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.conftest import ServeFactory, SettingsFactory
from tests.helpers import ADMIN_KEY, sample

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("mode", ["overlap", "drain_first"])
async def test_switch_while_20_requests_run(
    serve: ServeFactory, make_settings: SettingsFactory, mode: str
) -> None:
    # custom-random never stops early, so all 20 are still generating when the switch starts
    settings = make_settings(active_model="custom-random", max_concurrency=20, switch_mode=mode)
    async with serve(settings) as (_, client, service):

        async def ask(i: int) -> httpx.Response:
            body = {"prompt": f"question {i}", "max_tokens": 60, "temperature": 0.8, "seed": i}
            return await client.post("/generate", json=body)

        first_wave = [asyncio.create_task(ask(i)) for i in range(20)]
        await service.until_in_flight(20)
        labels = {"model": "custom-random", "backend": "custom"}
        assert sample(service, "bankllm_requests_in_flight", **labels) == 20
        switch = await client.post(
            "/switch", json={"model": "custom"}, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
        )
        second_wave = await asyncio.gather(*(ask(i) for i in range(20, 40)))
        first = await asyncio.gather(*first_wave)
    assert switch.status_code == 200
    assert switch.json()["previous"] == "custom-random"
    assert [r.status_code for r in first + second_wave] == [200] * 40
    assert {r.json()["model"] for r in first} == {"custom-random"}
    assert all(r.json()["completion_tokens"] == 60 for r in first)  # none was cut short
    assert {r.json()["model"] for r in second_wave} == {"custom"}
