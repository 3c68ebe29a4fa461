"""The fleet's switch on a real local Ray cluster: it reaches every replica under load and loses
nothing; a replica Ray restarts, and one the autoscaler adds, come up on the switched model; a
switch no replica can make leaves the fleet where it was."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import ray
from prometheus_client.parser import text_string_to_metric_families

from app.ray.app import APP, Scale
from app.ray.desired import NAMESPACE, actor_name
from app.ray.replica import replica_log
from app.telemetry.logfiles import log_files, read_log, read_rows
from tests.conftest import SettingsFactory
from tests.helpers import ADMIN_ID, ADMIN_KEY, USER_KEY
from tests.ray.conftest import deployed, fleet, until

pytestmark = pytest.mark.anyio
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@asynccontextmanager
async def client_at(url: str) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=250)
    headers = {"Authorization": f"Bearer {USER_KEY}"}
    async with httpx.AsyncClient(
        base_url=url, headers=headers, timeout=120, limits=limits
    ) as client:
        yield client


async def test_a_switch_under_200_requests_reaches_every_replica_and_loses_none(
    ray_url: str, make_settings: SettingsFactory
) -> None:
    # custom-random never stops early: 48 tokens each, so the switch falls while they run;
    # 200 at once fit in two replicas' queues
    settings = make_settings(active_model="custom-random", max_queue=200)
    with deployed(settings, Scale(replicas=2)):
        async with client_at(ray_url) as client:
            before = await fleet(client)
            replicas = {r["replica"] for r in before["replicas"]}
            assert len(replicas) == 2
            assert {r["model"] for r in before["replicas"]} == {"custom-random"}
            halfway = asyncio.Event()
            done = 0

            async def ask(i: int) -> httpx.Response:
                nonlocal done
                body = {"prompt": f"my card is lost {i}", "max_tokens": 48}
                response = await client.post("/generate", json=body)
                done += 1
                if done == 40:
                    halfway.set()
                return response

            asks = [asyncio.create_task(ask(i)) for i in range(200)]
            await halfway.wait()
            switch = await client.post("/switch", json={"model": "custom-b"}, headers=ADMIN)
            responses = await asyncio.gather(*asks)
            after = await fleet(client)
            models = await asyncio.gather(*(client.get("/models") for _ in range(8)))

    assert [r.status_code for r in responses] == [200] * 200
    assert switch.status_code == 200, switch.text
    body = switch.json()
    assert (body["previous"], body["active"]) == ("custom-random", "custom-b")
    assert {r["replica"] for r in body["replicas"]} == replicas
    assert all(r["model"] == "custom-b" and r["load_ms"] > 0 for r in body["replicas"])
    assert body["load_ms"] >= max(r["load_ms"] for r in body["replicas"])
    assert (after["model"], after["generation"], after["by"]) == ("custom-b", 1, ADMIN_ID)
    assert {(r["replica"], r["model"]) for r in after["replicas"]} == {
        (r, "custom-b") for r in replicas
    }
    assert {m.json()["active"] for m in models} == {"custom-b"}  # the same on every replica
    served = {r.json()["model"] for r in responses}
    assert served == {"custom-random", "custom-b"}  # the switch fell in the middle

    # one row per request, across the replicas' files, each naming its replica
    files = log_files(settings.benchmark_log)
    assert {f.name for f in files} == {f"bench.{r}.jsonl" for r in replicas}
    rows = [r for r in read_log(settings.benchmark_log) if r["type"] == "request"]
    assert sorted(r["request_id"] for r in rows) == sorted(r.json()["id"] for r in responses)
    assert {r["replica"] for r in rows} == replicas
    follows = [r for r in read_rows(settings.audit_path) if r.get("action") == "follow"]
    assert {(r["replica"], r["from"], r["to"], r["result"]) for r in follows} == {
        (r, "custom-random", "custom-b", "done") for r in replicas
    }


async def in_flight(client: httpx.AsyncClient) -> dict[str, float]:
    """Each live replica's generations running now, from its own /metrics."""
    running = {}
    for replica in (await fleet(client))["replicas"]:
        text = (await client.get(f"http://{replica['metrics']}/metrics")).text
        running[replica["replica"]] = sum(
            sample.value
            for family in text_string_to_metric_families(text)
            if family.name == "bankllm_requests_in_flight"
            for sample in family.samples
        )
    return running


def kill_replica(replica: str) -> None:
    """Kill a replica's actor the way a crash would; Serve's controller starts another."""
    [name] = [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith("SERVE_REPLICA::") and a["name"].endswith(f"#{replica}")
    ]
    ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)


async def test_a_killed_replica_comes_back_on_the_switched_model_and_its_requests_end(
    ray_url: str, make_settings: SettingsFactory
) -> None:
    settings = make_settings()
    with deployed(settings, Scale(replicas=2)):
        async with client_at(ray_url) as client:
            switch = await client.post("/switch", json={"model": "custom-random"}, headers=ADMIN)
            assert switch.status_code == 200, switch.text
            first = asyncio.Event()
            started = 0

            async def ask(i: int) -> tuple[str, str]:
                """Stream a long answer: its id, and how it ended (`done`, or its error)."""
                nonlocal started
                body = {"prompt": f"question {i}", "max_tokens": 512, "stream": True}
                async with client.stream("POST", "/generate", json=body) as response:
                    chunks = response.aiter_text()
                    text = await anext(chunks)
                    started += 1
                    if started == 8:
                        first.set()
                    request_id = json.loads(text.split("\n\n")[0].removeprefix("data: "))["id"]
                    try:
                        async for chunk in chunks:
                            text += chunk
                    except httpx.HTTPError as exc:
                        return request_id, type(exc).__name__
                return request_id, "done" if '"finish_reason"' in text else "cut"

            streams = [asyncio.create_task(ask(i)) for i in range(8)]
            await asyncio.wait_for(first.wait(), timeout=60)  # all eight generating
            # the replica with the most of them, by its own gauge (Ray's router spreads them)
            running = await in_flight(client)
            victim = max(running, key=lambda r: running[r])
            [survivor] = set(running) - {victim}
            kill_replica(victim)
            ended = dict(await asyncio.wait_for(asyncio.gather(*streams), timeout=120))

            async def replaced() -> bool:
                ids = {r["replica"] for r in (await fleet(client))["replicas"]}
                return len(ids) == 2 and victim not in ids

            await until(replaced, timeout_s=90)
            after = await fleet(client)
            hello = {"prompt": "hi", "max_tokens": 4}
            answers = await asyncio.gather(
                *(client.post("/generate", json=hello) for _ in range(6))
            )
    # every stream ended, none hangs: the survivor's with their answer, some of the killed
    # replica's with an error (it had running[victim] when it was killed)
    rows = read_rows(replica_log(settings.benchmark_log, survivor))
    served = {r["request_id"] for r in rows if r["type"] == "request"}
    assert running[victim] >= 1
    assert all(ended[i] == "done" for i in served & set(ended)), ended
    cut = {i for i, how in ended.items() if how != "done"}
    assert cut, ended
    assert not cut & served
    assert {r["model"] for r in after["replicas"]} == {"custom-random"}
    assert after["model"] == "custom-random"
    assert {a.status_code for a in answers} == {200}
    assert {a.json()["model"] for a in answers} == {"custom-random"}


async def test_an_autoscaled_replica_starts_on_the_switched_model(
    ray_url: str, make_settings: SettingsFactory
) -> None:
    # a replica with one generation running is full (target_ongoing_requests = MAX_CONCURRENCY)
    settings = make_settings(max_concurrency=1, max_queue=32)
    # Ray's default waits 30 s to scale out; the replicas push their load each 0.5 s here
    fast = {"upscale_delay_s": 0, "look_back_period_s": 11}
    with deployed(settings, Scale(autoscale=(1, 2), autoscaling=fast)):
        async with client_at(ray_url) as client:
            [only] = (await fleet(client))["replicas"]
            switch = await client.post("/switch", json={"model": "custom-random"}, headers=ADMIN)
            assert switch.status_code == 200, switch.text
            assert [r["replica"] for r in switch.json()["replicas"]] == [only["replica"]]

            async def scaled() -> bool:
                # keep six long answers running (bounded: at most 6 per check) until it scales
                load = [
                    client.post("/generate", json={"prompt": f"q{i}", "max_tokens": 512})
                    for i in range(6)
                ]
                await asyncio.gather(*load)
                return len((await fleet(client))["replicas"]) == 2

            await until(scaled, timeout_s=120, every_s=0)
            after = await fleet(client)
    [new] = [r for r in after["replicas"] if r["replica"] != only["replica"]]
    assert (new["model"], new["generation"]) == ("custom-random", 1)
    assert new["load_ms"] is None  # it started on the model; it never switched
    assert after["model"] == "custom-random"


async def test_a_switch_no_replica_can_make_leaves_the_fleet_on_its_model(
    ray_url: str, make_settings: SettingsFactory
) -> None:
    with deployed(make_settings(), Scale(replicas=2)):
        async with client_at(ray_url) as client:
            switch = await client.post("/switch", json={"model": "broken"}, headers=ADMIN)
            after = await fleet(client)
            answer = await client.post("/generate", json={"prompt": "hi", "max_tokens": 4})
    assert switch.status_code == 503
    error = switch.json()["error"]
    assert error["type"] == "switch_incomplete"
    assert error["message"].startswith("2 of 2 replicas did not switch to 'broken': ")
    assert error["message"].endswith("; the fleet stays on 'custom'")
    assert error["details"]["desired"] == "custom"
    replicas = error["details"]["replicas"]
    assert {r["replica"] for r in replicas} == {r["replica"] for r in after["replicas"]}
    assert all(r["model"] == "custom" and r["load_ms"] is None for r in replicas)
    assert all("checkpoint" in r["error"] for r in replicas), replicas
    assert (after["model"], after["generation"]) == ("custom", 2)  # set back to what serves
    assert {r["model"] for r in after["replicas"]} == {"custom"}
    assert (answer.status_code, answer.json()["model"]) == (200, "custom")


async def test_the_desired_model_survives_its_actor_and_the_controller_restarting(
    ray_url: str, make_settings: SettingsFactory
) -> None:
    with deployed(make_settings(), Scale(replicas=2)):
        async with client_at(ray_url) as client:
            switch = await client.post("/switch", json={"model": "custom-b"}, headers=ADMIN)
            assert switch.status_code == 200, switch.text
            desired = ray.get_actor(actor_name(APP), namespace=NAMESPACE)
            before = await _pid(desired)
            # a crash of each: Ray restarts both (no_restart=False)
            ray.kill(desired, no_restart=False)
            ray.kill(ray.get_actor("SERVE_CONTROLLER_ACTOR", namespace="serve"), no_restart=False)

            async def back() -> bool:
                if await _pid(desired) == before:
                    return False  # not restarted yet
                state = await fleet(client)  # answered by the restarted actor
                return len(state["replicas"]) == 2  # both replicas polling it again

            await until(back, timeout_s=60)
            after = await fleet(client)
            again = await client.post("/switch", json={"model": "custom"}, headers=ADMIN)
            # a pod that reaches the actor cannot switch the fleet without the admin key
            with pytest.raises(ray.exceptions.RayTaskError, match="derived from the admin key"):
                await desired.switch.remote("custom-b", "someone", "pod", 5.0, "forged")
    assert (after["model"], after["generation"]) == ("custom-b", 1)  # read back from the KV
    assert {r["model"] for r in after["replicas"]} == {"custom-b"}
    assert again.status_code == 200, again.text
    assert [r["model"] for r in again.json()["replicas"]] == ["custom", "custom"]


async def _pid(actor: Any) -> int:
    pid: int = await actor.__ray_call__.remote(lambda self: os.getpid())
    return pid


async def test_a_switch_that_times_out_names_the_replicas_still_switching(
    ray_url: str, make_settings: SettingsFactory
) -> None:
    settings = make_settings(fleet_switch_timeout_s=0.001)  # over before any replica loads
    with deployed(settings, Scale(replicas=2)):
        async with client_at(ray_url) as client:
            switch = await client.post("/switch", json={"model": "custom-b"}, headers=ADMIN)

            async def switched() -> bool:
                state = await fleet(client)
                return {r["model"] for r in state["replicas"]} == {"custom-b"}

            await until(switched, timeout_s=60)  # they finish, and stay on it
            after = await fleet(client)
    assert switch.status_code == 503
    error = switch.json()["error"]
    assert error["type"] == "switch_incomplete"
    assert error["details"]["desired"] == "custom-b"  # a timeout is not a failure: no way back
    assert {r["error"] for r in error["details"]["replicas"]} == {
        "still switching when the switch timed out (FLEET_SWITCH_TIMEOUT_S)"
    }
    assert (after["model"], after["generation"]) == ("custom-b", 1)


async def test_a_second_switch_while_one_runs_is_409(
    ray_url: str, make_settings: SettingsFactory
) -> None:
    with deployed(make_settings(), Scale(replicas=2)):
        async with client_at(ray_url) as client:
            both = await asyncio.gather(
                client.post("/switch", json={"model": "custom-b"}, headers=ADMIN),
                client.post("/switch", json={"model": "custom-random"}, headers=ADMIN),
            )
            after = await fleet(client)
    assert sorted(r.status_code for r in both) == [200, 409]
    [done] = [r.json() for r in both if r.status_code == 200]
    [refused] = [r.json() for r in both if r.status_code == 409]
    assert refused["error"]["type"] == "switch_in_progress"
    assert (after["model"], after["generation"]) == (done["active"], 1)
    assert {r["model"] for r in after["replicas"]} == {done["active"]}
