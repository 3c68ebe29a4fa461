"""Each key's own limits: requests in flight, completion tokens a minute (what a request does
not use comes back), and a day's spend on cloud models; 429 with Retry-After beyond each, and
another key unaffected."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

from app.errors import KeyLimited
from app.serving.quotas import Quotas
from app.settings import Settings
from tests.conftest import ServeFactory, SettingsFactory
from tests.fake_gemini import ASK
from tests.helpers import EVAL_KEY

NOON = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.seconds = 0.0
        self.day = NOON

    def monotonic(self) -> float:
        return self.seconds

    def now(self) -> dt.datetime:
        return self.day


def _quotas(settings: Settings, clock: Clock) -> Quotas:
    return Quotas(settings, clock.monotonic, clock.now)


def _refusal(call: Callable[[], object]) -> tuple[str, str]:
    with pytest.raises(KeyLimited) as refused:
        call()
    return refused.value.details["limit"], refused.value.headers["Retry-After"]


def test_in_flight_is_per_key_and_given_back(make_settings: SettingsFactory) -> None:
    quotas = _quotas(make_settings(key_max_in_flight=2), Clock())
    grants = [quotas.admit("a", 16, remote=False) for _ in range(2)]
    assert _refusal(lambda: quotas.admit("a", 16, remote=False)) == ("in_flight", "1")
    quotas.admit("b", 16, remote=False)  # another key has its own
    grants[0].settle(16, None)
    grants[0].settle(16, None)  # once only
    quotas.admit("a", 16, remote=False)
    assert _refusal(lambda: quotas.admit("a", 16, remote=False))[0] == "in_flight"


def test_tokens_a_minute_refill_and_unused_ones_come_back(make_settings: SettingsFactory) -> None:
    clock = Clock()
    quotas = _quotas(make_settings(key_tokens_per_minute=120), clock)  # 2 a second
    first = quotas.admit("a", 100, remote=False)
    # 20 left, 100 asked: 80 short at 2 a second
    assert _refusal(lambda: quotas.admit("a", 100, remote=False)) == ("tokens_per_minute", "40")
    first.settle(10, None)  # 90 unused come back: 110
    quotas.admit("a", 100, remote=False).settle(100, None)  # 10 left
    clock.seconds += 45  # +90, 100 in all
    quotas.admit("a", 100, remote=False)
    assert _refusal(lambda: quotas.admit("a", 1000, remote=False)) == ("tokens_per_minute", "60")


def test_a_day_s_spend_on_cloud_models_resets_at_midnight(make_settings: SettingsFactory) -> None:
    clock = Clock()
    quotas = _quotas(make_settings(key_daily_spend_usd=0.01), clock)
    quotas.admit("a", 16, remote=True).settle(16, 0.006)
    quotas.admit("a", 16, remote=True).settle(16, 0.006)  # admitted under the cap, ends over
    assert _refusal(lambda: quotas.admit("a", 16, remote=True)) == ("daily_spend", str(12 * 3600))
    quotas.admit("a", 16, remote=False).settle(16, None)  # local models cost nothing
    quotas.admit("b", 16, remote=True).settle(16, 0.006)
    clock.day = NOON + dt.timedelta(hours=12)
    quotas.admit("a", 16, remote=True)


@pytest.mark.anyio
async def test_a_key_over_its_limit_gets_429_and_others_do_not(
    serve: ServeFactory, gemini_settings: SettingsFactory
) -> None:
    settings = gemini_settings(active_model="gemini", key_daily_spend_usd=1e-9)
    eval_key = {"Authorization": f"Bearer {EVAL_KEY}"}
    async with serve(settings) as (_, client, _):
        first = await client.post("/generate", json=ASK)
        second = await client.post("/generate", json=ASK)
        other = await client.post("/v1/completions", json={"prompt": "hi"}, headers=eval_key)
        openai = await client.post("/v1/completions", json={"prompt": "hi"})
    assert (first.status_code, second.status_code, other.status_code) == (200, 429, 200)
    assert second.json()["error"]["type"] == "key_limited"
    assert second.json()["error"]["details"]["limit"] == "daily_spend"
    assert int(second.headers["Retry-After"]) >= 1
    assert (openai.status_code, openai.json()["error"]["type"]) == (429, "rate_limit_error")
    assert int(openai.headers["Retry-After"]) >= 1


def test_what_a_request_used_past_its_share_is_owed(make_settings: SettingsFactory) -> None:
    quotas = _quotas(make_settings(key_tokens_per_minute=120), Clock())  # 2 a second
    quotas.admit("a", 512, remote=False).settle(500, None)  # took 120, used 500: owes 380
    assert _refusal(lambda: quotas.admit("a", 10, remote=False)) == ("tokens_per_minute", "195")
    quotas.admit("b", 100, remote=False).settle(None, None)  # tokens came, no usage: keeps all
    assert _refusal(lambda: quotas.admit("b", 30, remote=False)) == ("tokens_per_minute", "5")
