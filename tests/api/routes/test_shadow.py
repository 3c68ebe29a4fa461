"""GET/POST/DELETE /shadow, the gated POST /switch and the audit trail, over HTTP on real
checkpoints: `custom-twin` is the active model's own checkpoint under another name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import httpx
import pytest

from app.banking.corpus import Example, write_csv
from app.service import Service
from app.settings import DEFAULT_CHECKPOINT
from tests.conftest import ServeFactory, SettingsFactory
from tests.helpers import ADMIN_ID, ADMIN_KEY, Started, error_body, read_log

pytestmark = pytest.mark.anyio
ASKS = ["my card has not arrived", "I lost my card", "how do I top up", "where is my card"]
NO_SHADOW: dict[str, Any] = {
    "model": None,
    "sample": None,
    "queued": 0,
    "dropped": {},
    "spent_today_usd": 0.0,
    "max_cost_usd": None,
}


@pytest.fixture
def twins(make_settings: SettingsFactory, checkpoints: dict[str, Path], tmp_path: Path) -> Any:
    """Settings serving the committed default checkpoint (it names an intent for every ask),
    with `custom-twin` (the same checkpoint again) and `custom-random` (random weights)."""
    models = tmp_path / "twins.json"
    entries = [
        {
            "name": "custom-twin",
            "backend": "custom",
            "options": {"checkpoint": str(DEFAULT_CHECKPOINT)},
        },
        {
            "name": "custom-random",
            "backend": "custom",
            "options": {"checkpoint": str(checkpoints["random"])},
        },
    ]
    models.write_text(json.dumps(entries))
    return make_settings(models_file=models, custom_checkpoint=DEFAULT_CHECKPOINT)


async def _mirror(started: Started, admin: dict[str, str], model: str, rounds: int = 2) -> None:
    """Mirror every request to `model` and send ASKS `rounds` times, greedy."""
    client, service = started.client, started.service
    response = await client.post("/shadow", json={"model": model, "sample": 1.0}, headers=admin)
    assert response.status_code == 200, response.text
    for _ in range(rounds):
        for text in ASKS:
            body = {"prompt": text, "max_tokens": 24, "temperature": 0}
            assert (await client.post("/generate", json=body)).status_code == 200
    await service.shadow.settled()


def _admin_rows(service: Service) -> list[dict[str, Any]]:
    return [r for r in read_log(service.settings, service, audit=True) if r["type"] == "admin"]


async def test_a_twin_agrees_always_and_random_weights_rarely(
    serve: ServeFactory, twins: Any, admin: dict[str, str]
) -> None:
    async with serve(twins) as served:
        before = (await served.client.get("/shadow", headers=admin)).json()
        await _mirror(served, admin, "custom-twin")
        await _mirror(served, admin, "custom-random")
        report = (await served.client.get("/shadow", headers=admin)).json()
    assert before == {"shadow": NO_SHADOW, "shadows": {}}
    assert report["shadow"] == {**NO_SHADOW, "model": "custom-random", "sample": 1.0}
    twin, random = report["shadows"]["custom-twin"], report["shadows"]["custom-random"]
    assert twin == {
        "mirrored": 8,
        "samples": 8,
        "agreement": 1.0,
        "agreement_95": [ANY, 1.0],
        "error_rate": 0.0,
        "disagreements": [],
        "p50_ms": ANY,
        "p95_ms": ANY,
        "live_p50_ms": ANY,
        "live_p95_ms": ANY,
        "labelled": 0,
        "live_accuracy": None,
        "shadow_accuracy": None,
    }
    assert 0.6 < twin["agreement_95"][0] < 1.0  # the Wilson interval of 8 out of 8
    assert random["samples"] == 8
    assert random["agreement"] < 0.5
    disagreed = sum(d["count"] for d in random["disagreements"])  # 4 asks: all 4 pairs listed
    assert disagreed == round(8 * (1 - random["agreement"]))


async def test_shadow_changes_are_refused_with_reasons(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    active = await client.post("/shadow", json={"model": "custom"}, headers=admin)
    unknown = await client.post("/shadow", json={"model": "gpt-9"}, headers=admin)
    user = await client.post("/shadow", json={"model": "custom-b"})
    share = await client.post("/shadow", json={"model": "custom-b", "sample": 2}, headers=admin)
    assert (active.status_code, unknown.status_code, user.status_code) == (409, 404, 403)
    assert active.json() == error_body(
        "shadow_is_active",
        "'custom' is the active model; a shadow is a candidate beside it",
        {"active": "custom"},
    )
    assert share.status_code == 422
    assert share.json()["error"]["details"][0]["loc"] == ["body", "sample"]


async def test_a_gated_switch_is_refused_then_accepted_once_the_shadow_earned_it(
    serve: ServeFactory, twins: Any, admin: dict[str, str]
) -> None:
    require = {"min_shadow_samples": 8, "min_agreement": 0.9, "max_error_rate": 0.01}
    ask = {"model": "custom-twin", "require": require}
    async with serve(twins) as served:
        refused = await served.client.post("/switch", json=ask, headers=admin)
        active_then = served.service.active
        await _mirror(served, admin, "custom-twin")
        accepted = await served.client.post("/switch", json=ask, headers=admin)
        cleared = await served.client.delete("/shadow", headers=admin)
        rows = _admin_rows(served.service)
    assert refused.status_code == 412
    assert refused.json() == error_body(
        "switch_refused",
        "'custom-twin' does not meet the switch's conditions: min_shadow_samples, "
        "min_agreement, max_error_rate failed",
        {
            "model": "custom-twin",
            "conditions": [
                {"condition": "min_shadow_samples", "required": 8, "measured": 0, "passed": False},
                {"condition": "min_agreement", "required": 0.9, "measured": None, "passed": False},
                {
                    "condition": "max_error_rate",
                    "required": 0.01,
                    "measured": None,
                    "passed": False,
                },
            ],
        },
    )
    assert active_then is not None
    assert active_then.name == "custom"
    assert accepted.status_code == 200
    assert accepted.json() == {"previous": "custom", "active": "custom-twin", "load_ms": ANY}
    assert cleared.json()["shadow"] == NO_SHADOW
    by = ADMIN_ID
    assert [(r["action"], r["result"], r["from"], r["to"], r["by"]) for r in rows] == [
        ("start", "done", None, "custom", "service"),
        ("switch", "asked", "custom", "custom-twin", by),
        ("switch", "refused", "custom", "custom-twin", by),
        ("shadow_set", "asked", None, "custom-twin", by),
        ("shadow_set", "done", None, "custom-twin", by),
        ("switch", "asked", "custom", "custom-twin", by),
        ("switch", "done", "custom", "custom-twin", by),
        ("shadow_clear", "done", "custom-twin", None, by),  # promoted: it shadows no one now
        ("shadow_clear", "asked", None, None, by),  # the DELETE, with nothing left to stop
        ("shadow_clear", "done", None, None, by),
    ]
    assert rows[7]["reason"] == "promoted"
    assert rows[1]["require"] == require
    assert rows[2]["conditions"] == refused.json()["error"]["details"]["conditions"]
    assert rows[3]["sample"] == rows[4]["sample"] == 1.0
    assert rows[6]["load_ms"] >= 0
    assert ADMIN_KEY not in json.dumps(rows)


async def test_an_eval_condition_runs_the_evaluation_on_the_candidate(
    client: httpx.AsyncClient, admin: dict[str, str], service: Service, tmp_path: Path
) -> None:
    data = tmp_path / "eval.csv"
    write_csv(data, [Example(text, "card_arrival") for text in ASKS])
    require = {"min_eval_accuracy": 0.99, "eval_data": str(data)}
    refused = await client.post(
        "/switch", json={"model": "custom-random", "require": require}, headers=admin
    )
    missing = {"min_eval_accuracy": 0.5, "eval_data": str(tmp_path / "none.csv")}
    bad = await client.post(
        "/switch", json={"model": "custom-b", "require": missing}, headers=admin
    )
    evals = [r for r in read_log(service.settings, service) if r["type"] == "eval"]
    assert refused.status_code == 412
    (condition,) = refused.json()["error"]["details"]["conditions"]
    assert condition == {
        "condition": "min_eval_accuracy",
        "required": 0.99,
        "measured": ANY,
        "passed": False,
    }
    assert [(e["model"], e["examples"], e["accuracy"]) for e in evals] == [
        ("custom-random", 4, condition["measured"])
    ]
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["loc"] == ["body", "require", "eval_data"]
    assert service.active is not None
    assert service.active.name == "custom"
