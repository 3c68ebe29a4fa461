"""What a bank's security review asks of the service, each as a test."""

from __future__ import annotations

import json
import logging
import re

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import ValidationError

from app.settings import PUBLISHED_KEYS, get_settings
from tests.conftest import ServeFactory, SettingsFactory
from tests.helpers import ADMIN_KEY, ROOT, USER_KEY, client_of, error_body, read_log

pytestmark = pytest.mark.anyio
OPEN = {"/health", "/health/live", "/metrics", "/openapi.json", "/docs", "/redoc"}
MISSING_KEY = "missing API key: send `Authorization: Bearer <key>`"


async def test_with_keys_set_no_route_but_health_metrics_and_docs_answers_without_one(
    app: FastAPI,
) -> None:
    routes = [
        (method, re.sub(r"\{[^}]+\}", "custom", route.path))
        for route in app.routes
        if isinstance(route, APIRoute)
        for method in sorted(route.methods or ())
    ]
    async with client_of(app, key=None) as anonymous:
        answers = {(m, p): (await anonymous.request(m, p, json={})) for m, p in routes}
        for path in sorted(OPEN):
            assert (await anonymous.get(path)).status_code == 200, path
    protected = {where for where in answers if where[1] not in OPEN}
    assert {(m, p) for m, p in protected} >= {("POST", "/generate"), ("POST", "/switch")}
    assert {where: answers[where].status_code for where in protected} == {
        where: 401 for where in protected
    }
    assert answers["POST", "/generate"].json() == error_body("unauthorized", MISSING_KEY)


async def test_the_document_says_every_route_but_the_open_ones_needs_a_key(app: FastAPI) -> None:
    document = app.openapi()
    either: list[dict[str, list[str]]] = [{"HTTPBearer": []}, {"APIKeyHeader": []}]
    security = {
        (method, path): operation.get("security")
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }
    assert security == {where: (None if where[1] in OPEN else either) for where in security}
    assert document["components"]["securitySchemes"] == {
        "HTTPBearer": {
            "type": "http",
            "description": "`Authorization: Bearer <key>`",
            "scheme": "bearer",
        },
        "APIKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    }


async def test_keys_never_appear_in_logs_rows_errors_or_metrics(
    serve: ServeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-key-that-must-not-be-echoed"
    async with (
        serve() as (app, client, service),
        client_of(app, key=None) as anonymous,
        client_of(app, key=ADMIN_KEY) as admin,
    ):
        said = [
            await client.post("/generate", json={"prompt": "my card has not arrived"}),
            await client.post("/v1/chat/completions", json={"messages": []}),
            await client.post("/switch", json={"model": "custom-b"}),  # a user key: 403
            await client.get("/metrics"),
            await client.get("/benchmarks/summary"),
            await admin.post("/switch", json={"model": "nope"}),
            await anonymous.post("/generate", json={"prompt": "hi"}, headers={"X-API-Key": wrong}),
            await anonymous.post(
                "/generate", json={"prompt": "hi"}, headers={"Authorization": f"Bearer {wrong}"}
            ),
            await anonymous.post(
                "/v1/completions", json={"prompt": "hi"}, headers={"Authorization": wrong}
            ),
        ]
        rows = read_log(service.settings, service)
    assert [r.status_code for r in said] == [200, 400, 403, 200, 200, 404, 401, 401, 401]
    seen = "\n".join(
        [caplog.text, json.dumps(rows)] + [r.text + json.dumps(dict(r.headers)) for r in said]
    )
    for key in (USER_KEY, ADMIN_KEY, wrong):
        assert key not in seen


async def test_the_summary_reads_this_deployments_log_and_no_other(
    serve: ServeFactory, make_settings: SettingsFactory
) -> None:
    settings = make_settings(active_model="echo")
    other = settings.benchmark_log.with_name("other-deployment.jsonl")
    other.parent.mkdir(parents=True, exist_ok=True)
    row = {"type": "request", "model": "their-model", "status": "ok", "latency_ms": 1.0}
    other.write_text(json.dumps(row) + "\n")
    async with serve(settings) as (_, client, _):
        await client.post("/generate", json={"prompt": "hi"})
        plain = await client.get("/benchmarks/summary")
        aimed = await client.get("/benchmarks/summary", params={"path": str(other), "log": "x"})
    assert plain.status_code == aimed.status_code == 200
    assert set(plain.json()["models"]) == set(aimed.json()["models"]) == {"echo"}


@pytest.mark.parametrize(
    ("setting", "value", "named"),
    [
        ("api_keys", "long-enough-user-key,short-key", "API_KEYS key 2 of 2 has 9 characters"),
        ("admin_api_key", "tiny", "ADMIN_API_KEY has 4 characters"),
    ],
)
def test_a_key_shorter_than_16_characters_is_refused_at_start_up(
    setting: str, value: str, named: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        get_settings(None, None, **{setting: value})
    assert f"{named}; keys need at least 16" in str(refused.value)
    assert value.split(",")[-1] not in str(refused.value)


SHIPPED = [ROOT / name for name in (".env.custom", ".env.gemini", ".env.qlora")]


def test_no_file_we_ship_sets_a_key_and_published_ones_are_refused_at_start_up() -> None:
    assigned = [
        (path.name, line)
        for path in SHIPPED
        for line in path.read_text().splitlines()
        if re.match(r"\s*(API_KEYS|ADMIN_API_KEY)=\S", line)
    ]
    assert assigned == []
    for key in sorted(PUBLISHED_KEYS | {"Change-Me-0123456789abcdef"}):
        with pytest.raises(ValidationError) as refused:
            get_settings(None, None, api_keys=key)
        assert "API_KEYS key 1 of 1 is a published placeholder, not a secret" in str(refused.value)
        assert "DEV_MODE=true lets it pass" in str(refused.value)
        assert key not in str(refused.value)


def test_dev_mode_lets_short_and_published_keys_through_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = get_settings(
        None, None, api_keys="short", admin_api_key="change-me-admin-key", dev_mode=True
    )
    assert [k.get_secret_value() for k in settings.api_keys] == ["short"]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == [
        "DEV_MODE: API_KEYS key 1 of 1 has 5 characters; keys need at least 16; "
        "never serve with it",
        "DEV_MODE: ADMIN_API_KEY is a published placeholder, not a secret; never serve with it",
    ]


async def test_docs_can_be_turned_off(serve: ServeFactory) -> None:
    async with serve(docs_enabled=False) as (_, client, _):
        hidden = {path: (await client.get(path)).status_code for path in OPEN}
    assert hidden == {
        "/health": 200,
        "/health/live": 200,
        "/metrics": 200,
        "/openapi.json": 404,
        "/docs": 404,
        "/redoc": 404,
    }
