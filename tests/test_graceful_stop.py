"""A real `bankllm serve` process stopped by a real SIGTERM: it drains what it has, refuses
what comes, logs every request and exits 0. The upstream is the fake Gemini, held by the test."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServeFactory
from tests.fake_gemini import ASK, REPLY_TEXT, FakeGemini, Fault
from tests.helpers import ADMIN_KEY, USER_KEY, error_body, parse_sse, read_log
from tests.process import ServiceProcess, gemini_env, service_process

HEADERS = {"Authorization": f"Bearer {USER_KEY}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """What the fake's held answers wait for; set at the end whatever the test did."""
    event = threading.Event()
    yield event
    event.set()


Held = tuple[ServiceProcess, "Future[httpx.Response]", "Future[list[Any]]"]


@contextmanager
def _holding(
    tmp_path: Path, upstream: tuple[FakeGemini, str], hold: threading.Event, grace_s: float
) -> Iterator[Held]:
    """A `bankllm serve` process on the fake Gemini, with a plain and a streamed request in
    flight, each held by the fake until `hold` is set (the stream after its reply's first two
    words, past the choice object's five opening chunks: past its first event, so its status is
    200)."""
    fake, url = upstream
    env = gemini_env(url, tmp_path, SHUTDOWN_GRACE_S=str(grace_s))
    fake.reset()
    with ThreadPoolExecutor(2) as pool, service_process(env, tmp_path) as process:
        arrived = len(fake.received)
        fake.faults.extend([Fault(hold=hold), Fault(hold=hold, hold_after=7)])

        def plain() -> httpx.Response:
            return httpx.post(f"{process.url}/generate", json=ASK, headers=HEADERS, timeout=60)

        begun = threading.Event()  # the stream's status, sent with its first event

        def streamed() -> list[Any]:
            body = ASK | {"stream": True}
            with httpx.stream(
                "POST", f"{process.url}/generate", json=body, headers=HEADERS, timeout=60
            ) as response:
                begun.set()
                assert response.status_code == 200
                return parse_sse(response.read().decode())

        answered = pool.submit(plain)
        assert fake.wait_received(arrived + 1, timeout_s=30)
        streaming = pool.submit(streamed)
        assert fake.wait_received(arrived + 2, timeout_s=30)
        assert begun.wait(timeout=30)
        yield process, answered, streaming


def _rows(tmp_path: Path) -> list[dict[str, Any]]:
    text = (tmp_path / "bench.jsonl").read_text()
    assert text.endswith("\n"), "the log was closed whole"
    rows = [json.loads(line) for line in text.splitlines()]
    return [row for row in rows if row["type"] == "request"]


def test_sigterm_lets_requests_in_flight_finish_and_refuses_new_ones(
    tmp_path: Path, gemini_upstream: tuple[FakeGemini, str], release: threading.Event
) -> None:
    with _holding(tmp_path, gemini_upstream, release, grace_s=30) as held:
        process, answered, streaming = held
        signalled = time.monotonic()
        process.popen.send_signal(signal.SIGTERM)
        process.wait_line("draining: 2 request", timeout_s=10)
        health = httpx.get(f"{process.url}/health")
        refused = httpx.post(f"{process.url}/generate", json=ASK, headers=HEADERS)
        release.set()
        plain, events = answered.result(timeout=30), streaming.result(timeout=30)
        assert process.popen.wait(timeout=30) == 0
        exited_s = time.monotonic() - signalled
    stopping = "the service is stopping; send the request to another replica"
    health_body = health.json()
    grace_left_s = health_body["error"]["details"].pop("grace_left_s")
    assert (health.status_code, health_body) == (
        503,
        error_body("draining", stopping, {"retry_after_s": 1, "in_flight": 2}),
    )
    assert 0 < grace_left_s <= 30
    assert (refused.status_code, refused.headers["retry-after"], refused.json()) == (
        503,
        "1",
        error_body("draining", stopping, {"retry_after_s": 1}),
    )
    assert (plain.status_code, plain.json()["text"]) == (200, REPLY_TEXT)
    *deltas, result, done = events
    assert ("".join(d["delta"] for d in deltas), result["finish_reason"], done) == (
        REPLY_TEXT,
        "stop",
        "[DONE]",
    )
    assert exited_s < 30
    assert sorted((r["status"], r["stream"], r["error_type"]) for r in _rows(tmp_path)) == [
        ("ok", False, None),
        ("ok", True, None),
        ("rejected", False, "draining"),
    ]


def test_requests_past_the_grace_period_end_with_an_error_and_a_cancelled_row(
    tmp_path: Path, gemini_upstream: tuple[FakeGemini, str], release: threading.Event
) -> None:
    with _holding(tmp_path, gemini_upstream, release, grace_s=0.5) as held:  # never released
        process, answered, streaming = held
        process.popen.send_signal(signal.SIGTERM)
        plain, events = answered.result(timeout=30), streaming.result(timeout=30)
        assert process.popen.wait(timeout=30) == 0
    cut = "the service stopped before the answer ended (SHUTDOWN_GRACE_S=0.5)"
    assert (plain.status_code, plain.json()) == (503, error_body("shut_down", cut))
    *deltas, error, done = events
    assert ("".join(d["delta"] for d in deltas), error, done) == (
        "Your card ",
        error_body("shut_down", cut),
        "[DONE]",
    )
    assert sorted((r["status"], r["stream"], r["error_type"]) for r in _rows(tmp_path)) == [
        ("cancelled", False, "shut_down"),
        ("cancelled", True, "shut_down"),
    ]
    assert "drained: 2 request(s) cut" in process.log


def test_a_second_signal_cuts_at_once(
    tmp_path: Path, gemini_upstream: tuple[FakeGemini, str], release: threading.Event
) -> None:
    with _holding(tmp_path, gemini_upstream, release, grace_s=600) as held:
        process, answered, streaming = held
        process.popen.send_signal(signal.SIGTERM)
        process.wait_line("draining: 2 request", timeout_s=10)
        process.popen.send_signal(signal.SIGINT)
        plain, events = answered.result(timeout=30), streaming.result(timeout=30)
        assert process.popen.wait(timeout=30) == 0
    assert (plain.status_code, plain.json()["error"]["type"]) == (503, "shut_down")
    assert events[-2]["error"]["type"] == "shut_down"
    assert [r["status"] for r in _rows(tmp_path)] == ["cancelled", "cancelled"]


@pytest.mark.anyio
async def test_a_draining_service_refuses_switches_and_is_not_ready(
    serve: ServeFactory,
) -> None:
    async with serve() as (_, client, service):
        assert await service.drain.run() == 0  # nothing in flight: the drain ends at once
        switched = await client.post("/switch", json={"model": "custom-b"}, headers=ADMIN)
        health = await client.get("/health")
        live = await client.get("/health/live")
        audit = [r for r in read_log(service.settings, service, audit=True) if r["type"] == "admin"]
    stopping = "the service is stopping; send the request to another replica"
    assert [(r["action"], r["result"], r["to"], r.get("error_type")) for r in audit] == [
        ("start", "done", "custom", None),
        ("switch", "failed", "custom-b", "draining"),
    ]
    assert (switched.status_code, switched.json()) == (
        503,
        error_body("draining", stopping, {"retry_after_s": 1}),
    )
    assert (health.status_code, health.json()["error"]["details"]["in_flight"]) == (503, 0)
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
