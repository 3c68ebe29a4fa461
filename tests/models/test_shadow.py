"""Shadow traffic on the service: what is mirrored, what the client sees, what is recorded."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest
from pydantic import ValidationError

from app.backends.protocol import ResponseFormat
from app.banking.corpus import Example, write_csv
from app.errors import OneModelOnly, SwitchRefused, UpstreamError
from app.models.gate import Requirements
from app.service import Service
from tests.conftest import ServiceFactory, SettingsFactory
from tests.fake_gemini import FakeGemini
from tests.helpers import read_log, sample, started
from tests.memory import Memory

pytestmark = pytest.mark.anyio
LIVE_TEXT = "Your card is on its way."  # mem's reply, without its intent line
ASK = "where is my card"
CARD = "4111 1111 1111 1111"


def _shadow_rows(service: Service) -> list[dict[str, Any]]:
    return [r for r in read_log(service.settings, service) if r["type"] == "shadow"]


def _row(**fields: Any) -> dict[str, Any]:
    """A shadow row of mem (live) and mem-b (shadow), both answered, with `fields` changed."""
    return {
        "ts": ANY,
        "type": "shadow",
        "request_id": ANY,
        "model": "mem",
        "version": "mem-1",
        "shadow_model": "mem-b",
        "shadow_version": "mem-1",
        "status": "ok",
        "shadow_status": "ok",
        "shadow_error_type": None,
        "intent": "card_arrival",
        "shadow_intent": "lost_or_stolen_card",
        "handoff": None,
        "shadow_handoff": None,
        "agree": False,
        "label": None,
        "latency_ms": ANY,
        "shadow_latency_ms": ANY,
        "completion_tokens": 7,
        "shadow_completion_tokens": 4,
        "shadow_cost_usd": None,
        **fields,
    }


async def test_a_mirrored_request_is_answered_by_live_and_compared_in_one_row(
    start_service: ServiceFactory,
) -> None:
    async with start_service(shadow_model="mem-b", shadow_sample=1.0) as service:
        result = await service.pipeline.generate(ASK, temperature=0)
        await service.shadow.settled()
        rows = _shadow_rows(service)
        metrics = (
            sample(service, "bankllm_shadow_requests_total", shadow="mem-b", status="ok"),
            sample(service, "bankllm_shadow_agreement_total", shadow="mem-b", agree="false"),
            sample(service, "bankllm_shadow_latency_seconds_count", shadow="mem-b"),
        )
    assert (result.model, result.text, result.intent) == ("mem", LIVE_TEXT, "card_arrival")
    assert rows == [_row(request_id=result.id)]
    assert metrics == (1.0, 1.0, 1.0)


async def test_a_slow_shadow_delays_nothing_and_a_failing_one_changes_nothing(
    start_service: ServiceFactory, memory: Memory
) -> None:
    async with start_service(shadow_model="mem-b", shadow_sample=1.0) as service:
        hold = memory.hold["mem-b"] = asyncio.Event()  # after its warm-up
        memory.started["mem-b"] = asyncio.Event()
        slow = await service.pipeline.generate(ASK, temperature=0)  # returns with the shadow held
        await memory.started["mem-b"].wait()
        assert _shadow_rows(service) == []
        memory.failures["mem-b"] = [UpstreamError("the shadow broke")]
        hold.set()
        await service.shadow.settled()
        failed = await service.pipeline.generate(ASK, temperature=0)
        await service.shadow.settled()
        rows = _shadow_rows(service)
    assert (slow.text, failed.text) == (LIVE_TEXT, LIVE_TEXT)
    broken = {"shadow_status": "upstream_error", "shadow_error_type": "upstream_error"}
    assert rows == [
        _row(
            request_id=slow.id, **broken, shadow_intent=None, agree=None, shadow_completion_tokens=0
        ),
        _row(request_id=failed.id),
    ]


async def test_the_sample_rate_is_honoured(start_service: ServiceFactory) -> None:
    requests, rate = 2000, 0.1
    settings = {"shadow_sample": rate, "shadow_seed": 7, "shadow_queue": requests}
    async with start_service(shadow_model="mem-b", **settings) as service:
        for _ in range(requests):
            await service.pipeline.generate(ASK, temperature=0, max_tokens=2)
        await service.shadow.settled()
        mirrored = len(_shadow_rows(service))
        dropped = service.shadow.dropped
    # within four standard deviations of the binomial: a fair sampler fails 1 run in 15,000
    tolerance = 4 * math.sqrt(requests * rate * (1 - rate))
    assert abs(mirrored - requests * rate) <= tolerance
    assert dropped == {}


async def test_a_full_queue_drops_the_sample_and_counts_it(
    start_service: ServiceFactory, memory: Memory
) -> None:
    one = {"shadow_sample": 1.0, "shadow_queue": 1, "shadow_concurrency": 1}
    async with start_service(shadow_model="mem-b", **one) as service:
        hold = memory.hold["mem-b"] = asyncio.Event()  # after its warm-up
        memory.started["mem-b"] = asyncio.Event()
        first = await service.pipeline.generate(ASK, temperature=0)
        await memory.started["mem-b"].wait()  # the shadow took the first; the queue is empty
        others = [await service.pipeline.generate(ASK, temperature=0) for _ in range(4)]
        assert service.shadow.state() == {
            "model": "mem-b",
            "sample": 1.0,
            "queued": 1,
            "dropped": {"queue_full": 3},
            "spent_today_usd": 0.0,
            "max_cost_usd": None,
        }
        hold.set()
        await service.shadow.settled()
        rows = _shadow_rows(service)
        dropped = sample(
            service, "bankllm_shadow_dropped_total", shadow="mem-b", reason="queue_full"
        )
    assert [r["request_id"] for r in rows] == [first.id, others[0].id]
    assert dropped == 3.0


async def test_a_promoted_shadow_stops_shadowing(start_service: ServiceFactory) -> None:
    async with start_service(shadow_model="mem-b", shadow_sample=1.0) as service:
        before = await service.pipeline.generate(ASK, temperature=0)
        await service.shadow.settled()
        await service.switch("mem-b")
        await service.pipeline.generate(ASK, temperature=0)
        await service.shadow.settled()
        rows, state = _shadow_rows(service), service.shadow.state()
    assert [r["request_id"] for r in rows] == [before.id]
    assert (state["model"], state["sample"]) == (None, None)


async def test_an_evaluation_asks_a_cloud_candidate_under_the_pii_policy(
    start_service: ServiceFactory, memory: Memory, tmp_path: Path
) -> None:
    data = tmp_path / "eval.csv"
    write_csv(data, [Example(f"my card {CARD} is lost", "lost_or_stolen_card")])
    require = Requirements(min_eval_accuracy=0.0, eval_data=data)
    async with start_service(cloud_pii_policy="redact") as service:
        result = await service.switch("remote", require)
    asked = [m.content for conversation in memory.latest("remote").received for m in conversation]
    assert result.active == "remote"
    assert asked[-1] == "my card [CARD] is lost"
    assert not any(CARD in text for text in asked)


async def test_a_cloud_shadow_gets_the_prompt_as_a_live_cloud_request_would(
    gemini_settings: SettingsFactory, fake_gemini: FakeGemini
) -> None:
    settings = gemini_settings(
        active_model="echo", shadow_model="gemini", shadow_sample=1.0, cloud_pii_policy="redact"
    )
    async with started(settings) as (_, client, service):
        body = {"prompt": f"my card {CARD} is lost", "temperature": 0}
        response = await client.post("/generate", json=body)
        await service.shadow.settled()
        rows = _shadow_rows(service)
        redacted = sample(service, "bankllm_pii_redactions_total", kind="card", action="redacted")
    assert response.json()["model"] == "echo"
    asked = fake_gemini.received[-1].raw.decode()  # the warm-up came first
    assert CARD not in asked
    assert CARD.replace(" ", "") not in asked
    assert "[CARD]" in asked
    assert [(r["shadow_model"], r["shadow_status"], r["agree"]) for r in rows] == [
        ("gemini", "ok", True)
    ]
    assert redacted == 1.0


async def test_the_daily_cost_cap_stops_mirroring_to_a_paid_shadow(
    gemini_settings: SettingsFactory, fake_gemini: FakeGemini
) -> None:
    settings = gemini_settings(
        active_model="echo", shadow_model="gemini", shadow_sample=1.0, shadow_max_cost_usd=1e-9
    )
    async with started(settings) as (_, client, service):
        first = await client.post("/generate", json={"prompt": "where is my card"})
        await service.shadow.settled()
        second = await client.post("/generate", json={"prompt": "where is my card"})
        await service.shadow.settled()
        state, rows = service.shadow.state(), _shadow_rows(service)
        capped = sample(service, "bankllm_shadow_dropped_total", shadow="gemini", reason="cost_cap")
    assert (first.status_code, second.status_code) == (200, 200)
    assert [r["request_id"] for r in rows] == [first.json()["id"]]
    assert rows[0]["shadow_cost_usd"] > 1e-9
    assert state["dropped"] == {"cost_cap": 1}
    assert state["spent_today_usd"] == round(rows[0]["shadow_cost_usd"], 6)
    assert capped == 1.0


async def test_a_gated_switch_counts_only_the_candidate_s_current_version(
    start_service: ServiceFactory, memory_settings: SettingsFactory
) -> None:
    log = memory_settings().benchmark_log
    log.parent.mkdir(parents=True, exist_ok=True)
    earned = {"agree": True, "shadow_intent": "card_arrival", "shadow_version": "mem-0"}
    figures = {"ts": "t", "request_id": "r", "latency_ms": 1.0, "shadow_latency_ms": 1.0}
    log.write_text((json.dumps(_row(**earned, **figures)) + "\n") * 5)
    require = Requirements(min_shadow_samples=5, min_agreement=0.9)
    async with start_service() as service:
        with pytest.raises(SwitchRefused) as refused:
            await service.switch("mem-b", require)  # mem-b is mem-1 now: mem-0 earned those
        log.write_text(log.read_text().replace('"mem-0"', '"mem-1"'))
    async with start_service() as service:
        promoted = await service.switch("mem-b", require)
    assert refused.value.details["conditions"][0] == {
        "condition": "min_shadow_samples",
        "required": 5,
        "measured": 0,
        "passed": False,
    }
    assert promoted.active == "mem-b"


async def test_under_drain_first_nothing_loads_a_second_model(
    start_service: ServiceFactory, memory_settings: SettingsFactory, tmp_path: Path
) -> None:
    data = tmp_path / "eval.csv"
    write_csv(data, [Example(ASK, "card_arrival")])
    async with start_service(switch_mode="drain_first") as service:
        with pytest.raises(OneModelOnly) as shadow:
            await service.admin.set_shadow("mem-b", 0.1, "open")
        with pytest.raises(OneModelOnly) as evaluation:
            await service.switch("mem-b", Requirements(min_eval_accuracy=0.5, eval_data=data))
        loaded = [m.name for m in service.models() if m.loaded]
    with pytest.raises(ValidationError, match="SWITCH_MODE=drain_first holds one at a time"):
        memory_settings(switch_mode="drain_first", shadow_model="mem-b")
    assert (shadow.value.status_code, evaluation.value.status_code) == (409, 409)
    assert evaluation.value.message == (
        "an evaluation of the candidate loads a second model, and SWITCH_MODE=drain_first "
        "holds one at a time"
    )
    assert loaded == ["mem"]


async def test_a_shadow_is_asked_in_prose_whatever_format_the_caller_asked_for(
    start_service: ServiceFactory,
) -> None:
    """mem-b refuses a response_format: mirrored with it, it would count as failing."""
    async with start_service(shadow_model="mem-b", shadow_sample=1.0) as service:
        asked = ResponseFormat({"type": "object"}, "answer")
        result = await service.pipeline.generate(ASK, temperature=0, response_format=asked)
        await service.shadow.settled()
        rows = _shadow_rows(service)
    assert rows == [_row(request_id=result.id)]  # shadow_status ok
