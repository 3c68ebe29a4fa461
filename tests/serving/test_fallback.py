"""FALLBACK_MODEL answers for a cloud model that fails before its first token, through the app."""

from __future__ import annotations

from collections.abc import Callable
from unittest.mock import ANY

import pytest

from app.settings import Settings
from tests.conftest import ServeFactory
from tests.fake_gemini import ASK, FakeGemini, Fault
from tests.helpers import ADMIN_KEY, parse_sse, read_log, sample

pytestmark = pytest.mark.anyio
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
CARD, IBAN, ACCOUNT = "4111 1111 1111 1111", "GB82 WEST 1234 5698 7654 32", "87654321"


async def test_a_stream_that_breaks_off_ends_with_an_error_event(
    serve: ServeFactory, gemini_settings: Callable[..., Settings], fake_gemini: FakeGemini
) -> None:
    settings = gemini_settings(active_model="gemini", fallback_model="custom")
    async with serve(settings) as (_, client, _):
        fake_gemini.faults.append(Fault(cut_after=8))  # the choice object has begun its reply
        response = await client.post("/generate", json=ASK | {"stream": True})
    events = parse_sse(response.text)
    assert response.status_code == 200
    assert [e["delta"] for e in events[:-2]] == ["Your ", "card ", "is "]
    assert events[-2] == {"error": {"type": "upstream_error", "message": ANY, "details": ANY}}
    assert "broke off" in events[-2]["error"]["message"]  # never a silent switch to custom
    assert events[-1] == "[DONE]"


async def test_the_fallback_answers_when_gemini_fails_before_its_first_token(
    serve: ServeFactory, gemini_settings: Callable[..., Settings], fake_gemini: FakeGemini
) -> None:
    settings = gemini_settings(active_model="gemini", fallback_model="custom")
    async with serve(settings) as (_, client, service):
        fake_gemini.faults.extend([Fault(status=503)] * 3)
        response = await client.post("/generate", json=ASK)
        fallbacks = sample(
            service,
            "bankllm_fallbacks_total",
            model="gemini",
            fallback="custom",
            error_type="upstream_error",
        )
        rows = read_log(settings, service)
    assert response.status_code == 200
    assert (response.json()["model"], response.json()["fallback_from"]) == ("custom", "gemini")
    assert (rows[-1]["model"], rows[-1]["status"], rows[-1]["fallback_from"]) == (
        "custom",
        "ok",
        "gemini",
    )
    assert fallbacks == 1.0


async def test_with_a_fallback_an_open_breaker_is_degraded_but_serving(
    serve: ServeFactory, gemini_settings: Callable[..., Settings], fake_gemini: FakeGemini
) -> None:
    settings = gemini_settings(
        active_model="gemini",
        gemini_retry_attempts=1,
        gemini_breaker_failures=1,
        fallback_model="custom",
    )
    async with serve(settings) as (_, client, _):
        fake_gemini.faults.append(Fault(status=500))
        answers = [await client.post("/generate", json=ASK) for _ in range(2)]
        health = await client.get("/health")
    assert [(r.status_code, r.json()["model"]) for r in answers] == [(200, "custom")] * 2
    assert health.status_code == 200
    assert health.json() == {
        "status": "degraded",
        "model": "gemini",
        "backend": "gemini",
        "version": "gemini-2.5-flash",
        "problem": ANY,
        "fallback": "custom",
        "log_problem": None,
    }
    assert "circuit open" in health.json()["problem"]
