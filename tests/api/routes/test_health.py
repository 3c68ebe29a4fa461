from __future__ import annotations

import re
from pathlib import Path
from unittest.mock import ANY

import httpx
import pytest

from app.backends.custom.gpt.checkpoint import read_config
from tests.conftest import ServeFactory, SettingsFactory
from tests.helpers import client_of, running

pytestmark = pytest.mark.anyio


async def test_ready_names_the_model_that_serves(
    client: httpx.AsyncClient, checkpoints: dict[str, Path]
) -> None:
    response = await client.get("/health", headers={"Authorization": ""})
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "model": "custom",
        "backend": "custom",
        "version": read_config(checkpoints["a"])["version"],
        "problem": None,
        "fallback": None,
        "log_problem": None,
    }


async def test_not_ready_without_a_model_but_alive(
    serve: ServeFactory, make_settings: SettingsFactory
) -> None:
    async with serve(active_model="broken") as (_, client, _):
        ready = await client.get("/health")
        live = await client.get("/health/live")
        generate = await client.post("/generate", json={"prompt": "hi"})
    assert ready.status_code == 503
    assert ready.json() == {
        "error": {
            "type": "model_unavailable",
            "message": ANY,
            "details": {"model": "broken", "attempts": 1, "next_attempt_in_s": ANY},
        }
    }
    message = ready.json()["error"]["message"]
    assert message.startswith("broken is not loaded: model 'broken' is unavailable: no checkpoint")
    assert re.search(r"1 attempt\(s\) so far, the next in [\d.]+ s \(or load one with", message)
    assert live.status_code == 200
    assert live.json() == {"status": "ok"}
    assert generate.status_code == 503
    assert generate.json()["error"]["message"] == (
        "no model is loaded; an admin can load one with POST /switch"
    )


async def test_an_unregistered_active_model_stops_the_start(
    make_settings: SettingsFactory,
) -> None:
    with pytest.raises(ValueError, match="ACTIVE_MODEL='nope' is not a registered model"):
        async with running(make_settings(active_model="nope")):
            pass


async def test_a_public_probe_names_no_server_folder(serve: ServeFactory, tmp_path: Path) -> None:
    async with serve(active_model="broken") as (app, _, _), client_of(app, key=None) as anyone:
        health = await anyone.get("/health")
    assert health.status_code == 503
    assert "load" in health.json()["error"]["message"]
    assert str(tmp_path) not in health.text  # the broken checkpoint's folder
