"""Serving through Ray's proxy behaves as one process does: 429 with Retry-After when the replicas
are full, SSE streams, a client that leaves cancels its generation in its replica, the OpenAI
SDK on /v1; and Prometheus finds and scrapes every replica."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from app.ray.app import Scale
from app.telemetry.logfiles import read_log
from tests.conftest import SettingsFactory
from tests.helpers import ROOT, USER_KEY, openai_client, parse_sse
from tests.prometheus import prometheus_at
from tests.ray.conftest import deployed, fleet, until

pytestmark = pytest.mark.anyio
USER = {"Authorization": f"Bearer {USER_KEY}"}
LONG = {"prompt": "tell me everything", "max_tokens": 4000}  # seconds of custom-slow


@pytest.fixture
def two_replicas(
    ray_url: str, make_settings: SettingsFactory, checkpoints: dict[str, Path], tmp_path: Path
) -> Iterator[Any]:
    """custom-slow (random weights: it never stops early, and a long answer lasts seconds, longer
    than a disconnect takes to cross Ray's proxy) on two replicas, each running one generation at
    a time with no queue: a third request at once is refused."""
    models_file = tmp_path / "with-slow.json"
    registered_file = make_settings().models_file
    assert registered_file is not None
    registered = json.loads(registered_file.read_text())
    slow = {"checkpoint": str(checkpoints["slow"]), "compile": False}
    registered["models"].append({"name": "custom-slow", "backend": "custom", "options": slow})
    models_file.write_text(json.dumps(registered))
    settings = make_settings(
        active_model="custom-slow",
        models_file=models_file,
        max_tokens_limit=LONG["max_tokens"],
        max_concurrency=1,
        max_queue=0,
    )
    with deployed(settings, Scale(replicas=2)):
        yield settings


async def test_full_replicas_answer_429_with_retry_after(ray_url: str, two_replicas: Any) -> None:
    async with httpx.AsyncClient(base_url=ray_url, headers=USER, timeout=120) as client:
        answers = await asyncio.gather(*(client.post("/generate", json=LONG) for _ in range(8)))
    codes = sorted(a.status_code for a in answers)
    assert set(codes) == {200, 429}, codes
    assert codes.count(429) >= 4  # at most one running on each replica, none waiting
    refused = [a for a in answers if a.status_code == 429]
    assert all(int(a.headers["retry-after"]) >= 1 for a in refused)
    assert {a.json()["error"]["type"] for a in refused} == {"queue_full"}


async def test_a_stream_comes_through_and_a_client_that_leaves_cancels_it(
    ray_url: str, two_replicas: Any
) -> None:
    settings = two_replicas
    async with httpx.AsyncClient(base_url=ray_url, headers=USER, timeout=120) as client:
        hello = {"prompt": "hi", "max_tokens": 6, "temperature": 0}  # greedy: as on any replica
        plain = (await client.post("/generate", json=hello)).json()
        short = await client.post("/generate", json={**hello, "stream": True})
        async with client.stream("POST", "/generate", json={**LONG, "stream": True}) as left:
            assert left.headers["content-type"].startswith("text/event-stream")
            first = await anext(left.aiter_text())
        # the client has gone; the replica's row says what became of the generation

        def rows() -> list[dict[str, Any]]:
            return [r for r in read_log(settings.benchmark_log) if r["type"] == "request"]

        async def recorded() -> bool:
            return len(rows()) == 3

        await until(recorded, timeout_s=60)
    *deltas, final, done = parse_sse(short.text)
    assert done == "[DONE]"
    assert (final["completion_tokens"], final["finish_reason"]) == (6, "length")
    assert "".join(d["delta"] for d in deltas) == plain["text"]
    cut = json.loads(first.split("\n\n")[0].removeprefix("data: "))["id"]
    [row] = [r for r in rows() if r["request_id"] == cut]
    assert row["status"] == "cancelled"
    assert row["completion_tokens"] < LONG["max_tokens"]  # it stopped when the client left


async def test_the_openai_sdk_works_through_the_proxy(ray_url: str, two_replicas: Any) -> None:
    async with openai_client(ray_url) as sdk:
        chat = await sdk.chat.completions.create(
            model="custom-slow",
            messages=[{"role": "user", "content": "my card is lost"}],
            max_completion_tokens=5,
        )
        stream = await sdk.chat.completions.create(
            model="custom-slow",
            messages=[{"role": "user", "content": "my card is lost"}],
            max_completion_tokens=5,
            stream=True,
        )
        pieces = [chunk async for chunk in stream]
        listed = await sdk.models.list()
    assert chat.model == "custom-slow"
    assert chat.usage is not None
    assert chat.usage.completion_tokens == 5
    assert chat.choices[0].finish_reason == "length"
    assert pieces[-1].choices[0].finish_reason == "length"
    assert "".join(p.choices[0].delta.content or "" for p in pieces if p.choices)
    assert "custom-slow" in {m.id for m in listed.data}


async def scrape_each(client: httpx.AsyncClient) -> dict[str, float]:
    """Each replica's own /metrics, as GET /metrics/replicas lists them: replica -> its ok
    requests."""
    scraped = {}
    for target in (await client.get("/metrics/replicas")).json():
        [address] = target["targets"]
        assert address.startswith("127.0.0.1:")  # REPLICA_METRICS_HOST
        text = (await client.get(f"http://{address}/metrics")).text
        scraped[target["labels"]["replica"]] = _requests(text)
    return scraped


async def test_each_replica_serves_its_own_metrics(ray_url: str, two_replicas: Any) -> None:
    async with httpx.AsyncClient(base_url=ray_url, headers=USER, timeout=120) as client:
        replicas = {r["replica"] for r in (await fleet(client))["replicas"]}
        for i in range(10):  # one at a time: none is refused
            answer = await client.post("/generate", json={"prompt": f"q{i}", "max_tokens": 4})
            assert answer.status_code == 200
        scraped = await scrape_each(client)
    assert set(scraped) == replicas
    assert sum(scraped.values()) == 10  # every request counted, by the replica that served it


@pytest.fixture
def prometheus(ray_url: str, tmp_path: Path) -> Iterator[str]:
    """A real Prometheus on 127.0.0.1, finding its targets through GET /metrics/replicas (the
    shipped docker/prometheus/ray.yml, every second)."""
    config = yaml.safe_load((ROOT / "docker" / "prometheus" / "ray.yml").read_text())
    [sd] = config["scrape_configs"][0]["http_sd_configs"]
    sd.update(url=f"{ray_url}/metrics/replicas", refresh_interval="1s")
    with prometheus_at(config, tmp_path) as url:
        yield url


async def test_prometheus_finds_and_scrapes_every_replica(
    ray_url: str, two_replicas: Any, prometheus: str
) -> None:
    found: list[dict[str, Any]] = []
    promql = 'sum by (replica) (bankllm_requests_total{status="ok"})'
    async with httpx.AsyncClient(base_url=ray_url, headers=USER, timeout=120) as client:
        for i in range(6):
            answer = await client.post("/generate", json={"prompt": f"q{i}", "max_tokens": 4})
            assert answer.status_code == 200
        scraped = await scrape_each(client)
        async with httpx.AsyncClient(base_url=prometheus, timeout=5) as prom:

            async def both_scraped() -> bool:
                try:
                    answer = await prom.get("/api/v1/query", params={"query": promql})
                except httpx.TransportError:
                    return False  # not listening yet
                found[:] = answer.json()["data"]["result"] if answer.status_code == 200 else []
                return len(found) == 2 and sum(float(s["value"][1]) for s in found) == 6

            await until(both_scraped, timeout_s=60, every_s=0.25)
    # the dashboard's sums over both replicas' series
    assert {s["metric"]["replica"]: float(s["value"][1]) for s in found} == scraped


def _requests(text: str) -> float:
    """bankllm_requests_total{status="ok"} of one replica's /metrics, over every label."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "bankllm_requests"
        for sample in family.samples
        if sample.name == "bankllm_requests_total" and sample.labels.get("status") == "ok"
    )
