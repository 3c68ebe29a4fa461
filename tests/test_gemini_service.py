"""The service on the gemini backend: the real SDK over real HTTP to the fake Gemini server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from unittest.mock import ANY

import httpx
import pytest

from app.banking.intents import IntentSet
from app.settings import Settings
from tests.conftest import ServeFactory
from tests.fake_gemini import API_KEY, ASK, CHOICE_CHUNKS, REPLY, REPLY_TEXT, FakeGemini, Fault
from tests.helpers import ADMIN_KEY, parse_sse, read_log, sample

pytestmark = pytest.mark.anyio
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
CARD, IBAN, ACCOUNT = "4111 1111 1111 1111", "GB82 WEST 1234 5698 7654 32", "87654321"


async def test_generate_and_stream_through_the_sdk(
    serve: ServeFactory, gemini_settings: Callable[..., Settings], fake_gemini: FakeGemini
) -> None:
    settings = gemini_settings(active_model="gemini")
    async with serve(settings) as (_, client, service):
        plain = await client.post("/generate", json=ASK)
        streamed = await client.post("/generate", json=ASK | {"stream": True})
        rows = read_log(settings, service)
    body = plain.json()
    assert (plain.status_code, body) == (
        200,
        {
            "id": ANY,
            "model": "gemini",
            "backend": "gemini",
            "version": "gemini-2.5-flash",
            "text": REPLY_TEXT,
            "intent": "card_arrival",
            "finish_reason": "stop",
            "prompt_tokens": ANY,
            "completion_tokens": CHOICE_CHUNKS,  # as Google counts: the whole JSON object
            "latency_ms": ANY,
            "ttft_ms": ANY,
            "fallback_from": None,
            "handoff": None,
            "confidence": 0.9,  # as the model states it
        },
    )
    events = parse_sse(streamed.text)
    assert "".join(e["delta"] for e in events[:-2]) == REPLY_TEXT
    assert events[-2] == {k: v for k, v in body.items() if k != "text"} | {
        "id": events[-2]["id"],
        "latency_ms": ANY,
        "ttft_ms": ANY,
    }
    assert events[-1] == "[DONE]"
    row = rows[-1]
    expected_cost = round((row["prompt_tokens"] * 0.30 + CHOICE_CHUNKS * 2.50) / 1e6, 8)
    assert (row["model"], row["status"], row["cost_usd"]) == ("gemini", "ok", expected_cost)
    assert [r.path.rsplit(":", 1)[1] for r in fake_gemini.received] == [
        "streamGenerateContent",  # the warm-up at start, on the path traffic takes
        "streamGenerateContent",
        "streamGenerateContent",
    ]


@pytest.mark.parametrize(
    ("faults", "overrides", "status", "error_type", "headers"),
    [
        ([Fault(status=500)] * 3, {}, 502, "upstream_error", {}),
        ([Fault(status=503)] * 3, {}, 502, "upstream_error", {}),
        (
            [Fault(status=429, retry_delay="30s")],
            {},
            429,
            "upstream_rate_limited",
            {"retry-after": "30"},
        ),
        (
            [Fault(delay_s=2.0)],
            {"gemini_timeout_s": 0.2, "gemini_retry_attempts": 1},
            504,
            "upstream_timeout",
            {},
        ),
        ([Fault(malformed=True)], {}, 502, "upstream_error", {}),
        ([Fault(finish_reason="SAFETY")], {}, 502, "upstream_safety", {}),
        ([Fault(finish_reason="RECITATION")], {}, 502, "upstream_error", {}),
    ],
)
async def test_each_fault_has_its_status_and_envelope(
    serve: ServeFactory,
    gemini_settings: Callable[..., Settings],
    fake_gemini: FakeGemini,
    faults: list[Fault],
    overrides: dict[str, Any],
    status: int,
    error_type: str,
    headers: dict[str, str],
) -> None:
    settings = gemini_settings(active_model="gemini", **overrides)
    async with serve(settings) as (_, client, service):
        fake_gemini.faults.extend(faults)
        response = await client.post("/generate", json=ASK)
        rows = read_log(settings, service)
    assert response.status_code == status
    assert response.json() == {"error": {"type": error_type, "message": ANY, "details": ANY}}
    assert {k: v for k, v in response.headers.items() if k == "retry-after"} == headers
    outcome = {504: "timeout"}.get(status, "upstream_error")
    outcome = "refused" if error_type == "upstream_safety" else outcome  # a judgement apart
    assert (rows[-1]["status"], rows[-1]["error_type"]) == (outcome, error_type)


async def test_a_rejected_key_fails_the_request_and_degrades_health(
    serve: ServeFactory, gemini_settings: Callable[..., Settings], fake_gemini: FakeGemini
) -> None:
    async with serve(gemini_settings(active_model="gemini")) as (_, client, _):
        fake_gemini.accepted_key = "a-rotated-key"  # Google no longer takes ours
        response = await client.post("/generate", json=ASK)
        health = await client.get("/health")
        fake_gemini.accepted_key = API_KEY
        recovered = await client.post("/generate", json=ASK)
        healthy = await client.get("/health")
    assert (response.status_code, response.json()["error"]["type"]) == (
        502,
        "upstream_auth_rejected",
    )
    message = response.json()["error"]["message"]
    assert message.startswith("gemini rejected the API key (400 INVALID_ARGUMENT)")
    assert (health.status_code, health.json()) == (
        503,
        {
            "error": {
                "type": "degraded",
                "message": message,
                "details": {"model": "gemini", "backend": "gemini"},
            }
        },
    )
    assert (recovered.status_code, healthy.json()["status"]) == (200, "ok")


async def test_switching_to_a_model_whose_key_is_rejected_keeps_the_old_one(
    serve: ServeFactory, gemini_settings: Callable[..., Settings], fake_gemini: FakeGemini
) -> None:
    async with serve(gemini_settings()) as (_, client, _):
        fake_gemini.accepted_key = "a-rotated-key"
        switched = await client.post("/switch", json={"model": "gemini"}, headers=ADMIN)
        health = await client.get("/health")
    assert switched.status_code == 503
    assert "failed its warm-up: gemini rejected the API key" in switched.json()["error"]["message"]
    assert (health.status_code, health.json()["model"]) == (200, "custom")


async def test_customer_numbers_never_reach_the_upstream(
    serve: ServeFactory, gemini_settings: Callable[..., Settings], fake_gemini: FakeGemini
) -> None:
    prompt = f"pay from card {CARD} to {IBAN}, my account {ACCOUNT}"
    settings = gemini_settings(active_model="gemini", cloud_pii_policy="redact")
    async with serve(settings) as (_, client, service):
        response = await client.post("/generate", json=ASK | {"prompt": prompt})
        counts = {
            kind: sample(service, "bankllm_pii_redactions_total", kind=kind, action="redacted")
            for kind in ("card", "iban", "account")
        }
    assert response.status_code == 200
    sent = fake_gemini.received[-1]
    assert sent.body["contents"][0]["parts"] == [
        {"text": "pay from card [CARD] to [IBAN], my account [ACCOUNT]"}
    ]
    for number in (CARD, IBAN, ACCOUNT):
        for form in (number, number.replace(" ", "")):
            assert form.encode() not in sent.raw
    assert counts == {"card": 1.0, "iban": 1.0, "account": 1.0}


async def test_the_block_policy_is_the_default_answers_422_and_sends_nothing(
    serve: ServeFactory, gemini_settings: Callable[..., Settings], fake_gemini: FakeGemini
) -> None:
    async with serve(gemini_settings(active_model="gemini")) as (_, client, _):
        before = len(fake_gemini.received)
        response = await client.post("/generate", json=ASK | {"prompt": f"card {CARD}"})
        clean = await client.post("/generate", json=ASK)
    assert (response.status_code, response.json()["error"]["details"]) == (
        422,
        {"found": {"card": 1}},
    )
    assert CARD not in response.text
    assert clean.status_code == 200
    assert len(fake_gemini.received) == before + 1  # only the clean prompt went out


async def test_the_breaker_fails_fast_and_health_shows_it(
    serve: ServeFactory, gemini_settings: Callable[..., Settings], fake_gemini: FakeGemini
) -> None:
    settings = gemini_settings(
        active_model="gemini", gemini_retry_attempts=1, gemini_breaker_failures=2
    )
    async with serve(settings) as (_, client, _):
        fake_gemini.faults.extend([Fault(status=500)] * 2)
        failed = [await client.post("/generate", json=ASK) for _ in range(2)]
        sent = len(fake_gemini.received)
        fast = await client.post("/generate", json=ASK)
        health = await client.get("/health")
    assert [r.status_code for r in failed] == [502, 502]
    assert (fast.status_code, fast.json()["error"]["type"]) == (503, "circuit_open")
    assert fast.headers["retry-after"] == "30"
    assert len(fake_gemini.received) == sent
    assert (health.status_code, health.json()["error"]["type"]) == (503, "degraded")


async def test_switch_custom_gemini_custom_while_20_requests_run(
    serve: ServeFactory, gemini_settings: Callable[..., Settings], fake_gemini: FakeGemini
) -> None:
    settings = gemini_settings(active_model="custom-random", max_concurrency=40)
    async with serve(settings) as (_, client, service):

        async def ask(i: int) -> httpx.Response:
            body = {"prompt": f"question {i}", "max_tokens": 40, "temperature": 0.8, "seed": i}
            return await client.post("/generate", json=body)

        def in_flight(model: str, backend: str) -> float:
            return sample(service, "bankllm_requests_in_flight", model=model, backend=backend)

        first = [asyncio.create_task(ask(i)) for i in range(20)]
        await service.until_in_flight(20)
        assert in_flight("custom-random", "custom") == 20
        to_gemini = await client.post("/switch", json={"model": "gemini"}, headers=ADMIN)
        fake_gemini.faults.extend([Fault(delay_s=0.5)] * 20)  # a slow upstream: 20 in flight
        second = [asyncio.create_task(ask(20 + i)) for i in range(20)]
        await service.until_in_flight(20)  # now with gemini
        assert in_flight("gemini", "gemini") == 20
        to_custom = await client.post("/switch", json={"model": "custom"}, headers=ADMIN)
        last = await asyncio.gather(*(ask(40 + i) for i in range(20)))
        answers = await asyncio.gather(*first, *second)
    switches = [to_gemini, to_custom]
    assert [s.status_code for s in switches] == [200, 200]
    assert [r.status_code for r in answers + last] == [200] * 60
    assert {r.json()["model"] for r in answers[:20]} == {"custom-random"}
    assert {r.json()["model"] for r in last} == {"custom"}
    assert {r.json()["model"] for r in answers[20:]} == {"gemini"}


async def test_gemini_hands_off_what_it_chooses_out_of_scope_and_what_it_doubts(
    serve: ServeFactory, gemini_settings: Callable[..., Settings], fake_gemini: FakeGemini
) -> None:
    handoffs = IntentSet.load().handoffs
    settings = gemini_settings(active_model="gemini", gemini_handoff_below=0.5)
    async with serve(settings) as (_, client, service):
        fake_gemini.reply = "intent: out_of_scope\nIt will rain."
        away = (await client.post("/generate", json=ASK | {"prompt": "weather?"})).json()
        fake_gemini.reply, fake_gemini.confidence = REPLY, 0.3
        unsure = (await client.post("/generate", json=ASK)).json()
        fake_gemini.confidence = 0.6
        sure = (await client.post("/generate", json=ASK)).json()
        counted = {
            reason: sample(
                service, "bankllm_handoffs_total", model="gemini", backend="gemini", reason=reason
            )
            for reason in ("out_of_scope", "low_confidence")
        }
    assert (away["text"], away["intent"], away["handoff"]) == (
        handoffs["out_of_scope"],
        None,
        "out_of_scope",
    )
    assert (unsure["text"], unsure["handoff"], unsure["confidence"]) == (
        handoffs["low_confidence"],
        "low_confidence",
        0.3,
    )
    assert (sure["text"], sure["intent"], sure["handoff"]) == (REPLY_TEXT, "card_arrival", None)
    assert counted == {"out_of_scope": 1, "low_confidence": 1}
