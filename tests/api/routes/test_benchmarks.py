from __future__ import annotations

from unittest.mock import ANY

import httpx
import pytest

from app.service import Service
from app.settings import Settings
from tests.conftest import ServeFactory
from tests.helpers import read_log

pytestmark = pytest.mark.anyio
ROW_FIELDS = [
    "ts",
    "type",
    "request_id",
    "model",
    "backend",
    "version",
    "status",
    "error_type",
    "stream",
    "latency_ms",
    "ttft_ms",
    "tpot_ms",
    "prompt_tokens",
    "completion_tokens",
    "tokens_per_s",
    "intent",
    "handoff",
    "confidence",
    "label",
    "cost_usd",
    "machine_s",
    "machine_unit",
    "fallback_from",
    "tools",
    "tool_calls",
    "api",
    "user",
]


async def test_one_row_per_request_and_a_summary_every_n(
    client: httpx.AsyncClient, settings: Settings, service: Service
) -> None:
    ids = []
    for i in range(7):
        body = {"prompt": f"card question {i}", "max_tokens": 6, "stream": i % 2 == 1}
        response = await client.post("/generate", json=body)
        assert response.status_code == 200
        ids.append(response.json()["id"] if i % 2 == 0 else response.text.split('"id":"')[1][:28])
    rows = read_log(settings, service)
    assert [r["type"] for r in rows] == ["request"] * 5 + ["summary"] + ["request"] * 2
    requests = [r for r in rows if r["type"] == "request"]
    assert [r["request_id"] for r in requests] == ids
    assert [r["stream"] for r in requests] == [False, True, False, True, False, True, False]
    for row in requests:
        assert list(row) == ROW_FIELDS
        assert row["status"] == "ok"
        assert row["model"] == "custom"
        assert row["completion_tokens"] <= 6
        assert row["ts"].endswith("Z")
        # a local model's answer is billed the CPU time it shared: some, never nothing
        assert row["machine_unit"] == "CPU-s"
        assert row["machine_s"] > 0
        assert row["cost_usd"] > 0
    summary = rows[5]
    assert summary == {
        "ts": ANY,
        "type": "summary",
        "models": {
            "custom": {
                "version": ANY,
                "count": 5,
                "p50_ms": ANY,
                "p95_ms": ANY,
                "p99_ms": ANY,
                "mean_tokens_per_s": ANY,
                "error_rate": 0.0,
                "caller_errors": 0,
                "refused": 0,
                "mean_cost_usd": ANY,
                "cost_per_1000_usd": ANY,  # its CPU time: checked below
                "machine_per_1000": ANY,
                "machine_unit": "CPU-s",
                "labelled": 0,
                "accuracy": None,
                "accuracy_interval": None,
                "handoff_rate": 0.0,
                "p50_ttft_ms": ANY,
            }
        },
        "fastest_model": "custom",
        "recommended_model": None,  # nothing labelled: accuracy cannot decide
        "recommendation": ANY,
    }
    assert summary["recommendation"].startswith(
        "No recommendation yet: intent accuracy decides, and it needs 30 labelled answers"
    )


async def test_summary_route_gives_the_per_model_figures(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    await client.post("/generate", json={"prompt": "hi", "max_tokens": 4})
    await client.post("/switch", json={"model": "echo"}, headers=admin)
    await client.post("/generate", json={"prompt": "hi"})
    response = await client.get("/benchmarks/summary")
    body = response.json()
    assert response.status_code == 200
    assert body == {
        "models": {
            "custom": {
                "version": ANY,
                "count": 1,
                "p50_ms": ANY,
                "p95_ms": ANY,
                "p99_ms": ANY,
                "mean_tokens_per_s": ANY,
                "error_rate": 0.0,
                "caller_errors": 0,
                "refused": 0,
                "mean_cost_usd": ANY,
                "cost_per_1000_usd": ANY,  # its CPU time: checked below
                "machine_per_1000": ANY,
                "machine_unit": "CPU-s",
                "labelled": 0,
                "accuracy": None,
                "accuracy_interval": None,
                "handoff_rate": 0.0,
                "p50_ttft_ms": ANY,
            },
            "echo": {
                "version": ANY,
                "count": 1,
                "p50_ms": ANY,
                "p95_ms": ANY,
                "p99_ms": ANY,
                "mean_tokens_per_s": ANY,
                "error_rate": 0.0,
                "caller_errors": 0,
                "refused": 0,
                "mean_cost_usd": 0.0,
                "cost_per_1000_usd": None,  # no model: nothing billed
                "machine_per_1000": None,
                "machine_unit": None,
                "labelled": 0,
                "accuracy": None,
                "accuracy_interval": None,
                "handoff_rate": 0.0,
                "p50_ttft_ms": ANY,
            },
        },
        "fastest_model": "custom",  # echo, the service's own overhead, is never the fastest
        "recommended_model": None,  # nothing labelled; and echo never, however fast
        "recommendation": ANY,
    }
    assert body["models"]["custom"]["cost_per_1000_usd"] > 0
    assert body["models"]["custom"]["machine_per_1000"] > 0


async def test_the_log_never_holds_the_prompt_or_the_reply(serve: ServeFactory) -> None:
    async with serve(active_model="echo") as (_, client, service):
        body = {"prompt": "SECRET-4111 my card", "max_tokens": 20}
        answer = (await client.post("/generate", json=body)).json()
        rows = read_log(service.settings, service)
    text = service.settings.benchmark_log.read_text()
    reply = "This is the echo model. It answers the same words to every prompt."
    assert (len(rows), rows[0]["status"], answer["text"]) == (1, "ok", reply)
    assert "SECRET-4111" not in text
    assert reply not in text
