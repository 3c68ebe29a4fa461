"""The circuit breaker of a remote model, alone and inside the gemini adapter."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from app.backends.gemini.breaker import CircuitBreaker
from app.backends.protocol import SamplingParams, collect
from app.errors import (
    CircuitOpen,
    UpstreamError,
    UpstreamRefused,
)
from tests.fake_gemini import REPLY, FakeGemini, Fault
from tests.helpers import answer, ask

pytestmark = pytest.mark.anyio
GREEDY = SamplingParams(max_tokens=64, temperature=0.0)
REPLY_TOKENS = len(REPLY.split(" "))


async def test_the_breaker_opens_fails_fast_then_probes(
    open_adapter: Callable[..., Any], fake_gemini: FakeGemini, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr("app.backends.gemini.breaker.monotonic", lambda: clock[0])
    adapter = await open_adapter(
        gemini_retry_attempts=1, gemini_breaker_failures=2, gemini_breaker_cooldown_s=30
    )
    fake_gemini.faults.extend([Fault(status=503)] * 2)
    for _ in range(2):
        with pytest.raises(UpstreamError):
            await answer(adapter, "hello", GREEDY)
    with pytest.raises(CircuitOpen) as caught:
        await answer(adapter, "hello", GREEDY)
    assert (caught.value.status_code, caught.value.headers) == (503, {"Retry-After": "30"})
    assert len(fake_gemini.received) == 2  # failing fast sends nothing
    assert adapter.problem is not None
    assert "circuit open" in adapter.problem
    clock[0] += 30
    assert (await answer(adapter, "hello", GREEDY)).text == REPLY  # the probe closes it
    assert adapter.problem is None
    assert len(fake_gemini.received) == 3
    await adapter.close()


async def test_a_refused_request_does_not_count_against_the_model(
    open_adapter: Callable[..., Any], fake_gemini: FakeGemini
) -> None:
    adapter = await open_adapter(gemini_retry_attempts=1, gemini_breaker_failures=1)
    fake_gemini.faults.extend([Fault(status=400), Fault(finish_reason="SAFETY")])
    with pytest.raises(UpstreamRefused, match=r"refused the request \(400 INVALID_ARGUMENT\)"):
        await answer(adapter, "hello", GREEDY)
    with pytest.raises(UpstreamRefused, match="stopped its reply early"):
        await collect(adapter.stream(ask("hello"), GREEDY))
    assert adapter.problem is None
    assert (await answer(adapter, "hello", GREEDY)).text == REPLY  # the circuit stayed closed
    await adapter.close()


def test_breaker_lets_one_probe_through_and_reopens_when_it_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [0.0]
    monkeypatch.setattr("app.backends.gemini.breaker.monotonic", lambda: clock[0])
    breaker = CircuitBreaker("m", failures=1, cooldown_s=10)
    assert breaker.admit() is False
    breaker.failed(False)
    assert breaker.state == "open"
    clock[0] = 10
    assert breaker.admit() is True  # the probe
    with pytest.raises(CircuitOpen):
        breaker.admit()  # only one probe at a time
    breaker.failed(True)
    assert breaker.state == "open"
    clock[0] = 15
    with pytest.raises(CircuitOpen) as caught:
        breaker.admit()
    assert caught.value.headers == {"Retry-After": "5"}
    clock[0] = 20
    assert breaker.admit() is True
    breaker.abandoned(True)  # the client left: another may probe
    assert breaker.admit() is True
    breaker.succeeded(True)
    assert (breaker.state, breaker.problem, breaker.admit()) == ("closed", None, False)
