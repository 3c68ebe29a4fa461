from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.anyio


async def _families(
    client: httpx.AsyncClient,
) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    response = await client.get("/metrics", headers={"Authorization": ""})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        f.name: [(s.name, s.labels, s.value) for s in f.samples]
        for f in text_string_to_metric_families(response.text)
    }


async def test_histograms_are_labelled_with_the_model(client: httpx.AsyncClient) -> None:
    for _ in range(2):
        assert (
            await client.post("/generate", json={"prompt": "hi", "max_tokens": 8, "temperature": 0})
        ).status_code == 200
    await client.post("/generate", json={"prompt": ""})
    families = await _families(client)
    model = {"model": "custom", "backend": "custom"}
    # every request has a latency, the refused one too; only answers have a first token
    counts = {"bankllm_request_latency_seconds": 3.0, "bankllm_time_to_first_token_seconds": 2.0}
    for name, count in counts.items():
        assert (f"{name}_count", model, count) in families[name]
        buckets = [s for s in families[name] if s[0] == f"{name}_bucket"]
        assert [s[1]["le"] for s in buckets][:2] == ["0.005", "0.01"]
        assert buckets[-2][1]["le"] == "120.0"
    assert ("bankllm_requests_total", {**model, "status": "ok"}, 2.0) in families[
        "bankllm_requests"
    ]
    assert ("bankllm_requests_total", {**model, "status": "bad_request"}, 1.0) in families[
        "bankllm_requests"
    ]
    tokens = {s[0]: s[2] for s in families["bankllm_completion_tokens"]}
    assert 2 <= tokens["bankllm_completion_tokens_total"] <= 16
    assert families["bankllm_active_model_info"][0][1]["model"] == "custom"
    assert families["bankllm_active_model_info"][0][2] == 1.0
    assert families["bankllm_queue_depth"] == [("bankllm_queue_depth", {}, 0.0)]
    assert ("bankllm_requests_in_flight", model, 0.0) in families["bankllm_requests_in_flight"]


async def test_the_active_model_gauge_follows_a_switch(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    await client.post("/switch", json={"model": "echo"}, headers=admin)
    info = (await _families(client))["bankllm_active_model_info"]
    assert sorted((s[1]["model"], s[2]) for s in info) == [("custom", 0.0), ("echo", 1.0)]
