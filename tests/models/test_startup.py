"""ACTIVE_MODEL at start: a local model that fails to load is tried again in the background;
a remote one whose warm-up fails upstream serves degraded until it answers."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from app.errors import ModelUnavailable, UpstreamAuthRejected, UpstreamTimeout
from app.settings import Settings
from tests.conftest import ServeFactory, ServiceFactory
from tests.fake_gemini import FakeGemini, Fault
from tests.helpers import sample
from tests.memory import Memory

pytestmark = pytest.mark.anyio


async def test_a_model_that_fails_to_load_at_start_is_tried_again_until_it_loads(
    start_service: ServiceFactory, memory: Memory
) -> None:
    memory.load_failures["mem"] = 2
    async with start_service(start_retry_initial_s=0.01) as service:
        retry = service.startup.retry
        before = service.active
        await service.startup.until_done()
        result = await service.pipeline.generate("where is my card")
        attempts = {
            r: sample(service, "bankllm_model_load_attempts_total", model="mem", result=r)
            for r in ("failed", "ok")
        }
    assert before is None
    assert retry is not None
    assert (retry.model, retry.attempts, retry.next_in_s) == ("mem", 1, 0.01)
    assert "the disk is not mounted yet" in retry.reason
    assert service.startup.retry is None
    assert result.model == "mem"
    assert attempts == {"failed": 2, "ok": 1}


async def test_the_wait_doubles_up_to_its_cap(
    start_service: ServiceFactory, memory: Memory
) -> None:
    memory.load_failures["mem"] = 3
    async with start_service(start_retry_initial_s=0.01, start_retry_max_s=0.03) as service:
        waits: list[float] = []
        while service.startup.retry is not None and len(waits) < 3:
            waits.append(service.startup.retry.next_in_s)
            await service.startup.until_retried()
        await service.startup.until_done()
    assert waits == [0.01, 0.02, 0.03]


async def test_a_switch_ends_the_retries(start_service: ServiceFactory) -> None:
    async with start_service(active_model="broken", start_retry_initial_s=3600) as service:
        assert service.startup.retry is not None
        await service.switch("mem")
        await service.startup.close()  # the retry would have found a model installed anyway
        result = await service.pipeline.generate("hi")
    assert result.model == "mem"


async def test_a_remote_model_that_cannot_warm_up_serves_degraded_until_it_answers(
    start_service: ServiceFactory, memory: Memory
) -> None:
    memory.failures["remote"] = [UpstreamTimeout("remote did not answer within 30 s")]
    async with start_service(active_model="remote") as service:
        problem = service.model.problem
        result = await service.pipeline.generate("where is my card")
        after = service.model.problem
    assert problem == "warm-up failed: remote did not answer within 30 s"
    assert result.model == "remote"
    assert after is None


async def test_a_switch_to_a_remote_model_that_cannot_warm_up_keeps_the_old_one(
    start_service: ServiceFactory, memory: Memory
) -> None:
    async with start_service() as service:
        memory.failures["remote"] = [UpstreamTimeout("remote did not answer")]
        with pytest.raises(ModelUnavailable, match="'remote' failed its warm-up"):
            await service.switch("remote")
        active = service.active
    assert active is not None
    assert active.name == "mem"


async def test_gemini_down_at_start_serves_degraded_and_recovers_by_itself(
    serve: ServeFactory, gemini_settings: Callable[..., Settings], fake_gemini: FakeGemini
) -> None:
    fake_gemini.faults.extend([Fault(status=503)] * 3)  # every attempt of the warm-up
    settings = gemini_settings(active_model="gemini", gemini_breaker_failures=5)
    async with serve(settings) as (_, client, _):
        down = await client.get("/health")
        answer = await client.post("/generate", json={"prompt": "where is my card"})
        up = await client.get("/health")
    # degraded, but taking requests: a 503 would keep a load balancer from sending the one
    # request that can clear it
    assert (down.status_code, down.json()["status"]) == (200, "degraded")
    assert down.json()["problem"].startswith("warm-up failed: gemini failed (503")
    assert (answer.status_code, answer.json()["model"]) == (200, "gemini")
    assert (up.status_code, up.json()["status"]) == (200, "ok")


async def test_a_remote_model_that_refuses_its_warm_up_does_not_start_degraded(
    start_service: ServiceFactory, memory: Memory
) -> None:
    memory.failures["remote"] = [UpstreamAuthRejected("remote rejected the API key")]
    async with start_service(active_model="remote", start_retry_initial_s=3600) as service:
        active, retry = service.active, service.startup.retry
    assert active is None  # no wait fixes a rejected key: it is retried as a failed load
    assert retry is not None
    assert "rejected the API key" in retry.reason
