from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import httpx
import pytest
from fastapi import FastAPI

from app.backends.custom.gpt.checkpoint import read_config
from app.service import Service
from tests.conftest import ServeFactory, SettingsFactory
from tests.helpers import ADMIN_KEY, client_of, sample

pytestmark = pytest.mark.anyio


def _version(path: Path) -> str:
    return str(read_config(path)["version"])


async def test_models_lists_every_model_and_the_active_one(
    client: httpx.AsyncClient, checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    response = await client.get("/models")
    assert response.status_code == 200
    assert response.json() == {
        "active": "custom",
        "models": [
            {
                "name": "custom",
                "backend": "custom",
                "version": _version(checkpoints["a"]),
                "available": True,
                "reason": None,
                "loaded": True,
            },
            {
                "name": "qlora",
                "backend": "qlora",
                "version": "unknown",
                "available": False,
                "reason": "QLORA_BASE_MODEL is not set",
                "loaded": False,
            },
            {
                "name": "gemini",
                "backend": "gemini",
                "version": "gemini-2.5-flash",
                "available": False,
                "reason": "GEMINI_API_KEY is not set",
                "loaded": False,
            },
            {
                "name": "echo",
                "backend": "echo",
                "version": "fixed-reply-1",
                "available": True,
                "reason": None,
                "loaded": False,
            },
            {
                "name": "custom-b",
                "backend": "custom",
                "version": _version(checkpoints["b"]),
                "available": True,
                "reason": None,
                "loaded": False,
            },
            {
                "name": "custom-random",
                "backend": "custom",
                "version": _version(checkpoints["random"]),
                "available": True,
                "reason": None,
                "loaded": False,
            },
            {
                "name": "broken",
                "backend": "custom",
                "version": "unknown",
                "available": False,
                "reason": f"no checkpoint at {tmp_path / 'no'}; train one with `bankllm train "
                f"--out {tmp_path / 'no'}`",
                "loaded": False,
            },
        ],
    }


async def test_switch_loads_the_new_model_and_serves_it(
    client: httpx.AsyncClient, admin: dict[str, str], service: Service
) -> None:
    response = await client.post("/switch", json={"model": "custom-b"}, headers=admin)
    answer = await client.post("/generate", json={"prompt": "hi", "max_tokens": 5})
    models = (await client.get("/models")).json()
    assert response.status_code == 200
    assert response.json() == {"previous": "custom", "active": "custom-b", "load_ms": ANY}
    assert response.json()["load_ms"] > 0
    assert answer.json()["model"] == "custom-b"
    assert models["active"] == "custom-b"
    assert [m["name"] for m in models["models"] if m["loaded"]] == ["custom-b"]
    assert sample(service, "bankllm_model_switches_total", result="ok") == 1
    assert (
        sample(
            service, "bankllm_model_switch_seconds_count", **{"from": "custom", "to": "custom-b"}
        )
        == 1
    )


async def test_switch_to_the_active_model_changes_nothing(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    response = await client.post("/switch", json={"model": "custom"}, headers=admin)
    assert response.json() == {"previous": "custom", "active": "custom", "load_ms": 0.0}


async def test_switch_to_an_unknown_model_is_404(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    response = await client.post("/switch", json={"model": "gpt-9"}, headers=admin)
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "type": "model_not_found",
            "message": "no model named 'gpt-9'",
            "details": {
                "models": [
                    "broken",
                    "custom",
                    "custom-b",
                    "custom-random",
                    "echo",
                    "gemini",
                    "qlora",
                ]
            },
        }
    }


async def test_a_failed_load_is_503_and_the_old_model_stays(
    client: httpx.AsyncClient, admin: dict[str, str], service: Service, tmp_path: Path
) -> None:
    response = await client.post("/switch", json={"model": "broken"}, headers=admin)
    unavailable = await client.post("/switch", json={"model": "gemini"}, headers=admin)
    health = await client.get("/health")
    assert response.status_code == 503
    assert response.json() == {
        "error": {
            "type": "model_unavailable",
            "details": None,
            "message": f"model 'broken' is unavailable: no checkpoint at {tmp_path / 'no'}; "
            f"train one with `bankllm train --out {tmp_path / 'no'}`",
        }
    }
    assert unavailable.status_code == 503
    assert health.json()["model"] == "custom"
    assert sample(service, "bankllm_model_switches_total", result="failed") == 2


@pytest.mark.parametrize(
    ("key", "status", "error"),
    [
        (
            None,
            401,
            {
                "type": "unauthorized",
                "details": None,
                "message": "missing admin key: send `Authorization: Bearer <admin key>`",
            },
        ),
        ("wrong", 401, {"type": "unauthorized", "message": "invalid admin key", "details": None}),
        (
            "user",
            403,
            {
                "type": "forbidden",
                "details": None,
                "message": "this route needs the admin key; a user API key cannot use it",
            },
        ),
    ],
)
async def test_switch_needs_the_admin_key(
    app: FastAPI, key: str | None, status: int, error: dict[str, Any]
) -> None:
    async with client_of(app) as user, client_of(app, key=None) as anonymous:
        client = user if key == "user" else anonymous
        headers = {"Authorization": f"Bearer {key}"} if key == "wrong" else {}
        response = await client.post("/switch", json={"model": "echo"}, headers=headers)
        models = (await user.get("/models")).json()
    assert response.status_code == status
    assert response.json() == {"error": error}
    assert models["active"] == "custom"


async def test_drain_first_waits_for_in_flight_requests_and_refuses_a_second_switch(
    serve: ServeFactory, make_settings: SettingsFactory, admin: dict[str, str]
) -> None:
    settings = make_settings(switch_mode="drain_first")
    async with serve(settings) as (_, client, service):
        in_flight = service.pipeline.stream("my card", max_tokens=20, temperature=0)
        first = await anext(in_flight)
        switching = asyncio.create_task(
            client.post("/switch", json={"model": "custom-b"}, headers=admin)
        )
        await service.model.until_switching()
        second = await client.post("/switch", json={"model": "echo"}, headers=admin)
        rest = [event async for event in in_flight]  # the old model finishes its answer
        switched = await switching
    assert second.status_code == 409
    assert second.json() == {
        "error": {
            "type": "switch_in_progress",
            "details": None,
            "message": "another model switch is in progress; retry when it ends",
        }
    }
    assert rest[-1].result is not None
    assert rest[-1].result.model == "custom"
    assert first.id == rest[-1].result.id
    assert switched.json() == {"previous": "custom", "active": "custom-b", "load_ms": ANY}


async def test_drain_first_reloads_the_old_model_when_the_new_one_fails(
    serve: ServeFactory, make_settings: SettingsFactory, admin: dict[str, str]
) -> None:
    async with serve(switch_mode="drain_first") as (_, c, _):
        response = await c.post("/switch", json={"model": "broken"}, headers=admin)
        answer = await c.post("/generate", json={"prompt": "hi", "max_tokens": 3})
    assert response.status_code == 503
    assert answer.status_code == 200
    assert answer.json()["model"] == "custom"


async def test_admin_key_works_on_user_routes(app: FastAPI) -> None:
    async with client_of(app, key=ADMIN_KEY) as client:
        assert (await client.get("/models")).status_code == 200
