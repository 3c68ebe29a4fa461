"""The key check that every request passes (`app.api.access.KeyCheck`): every route the app has,
walked with no key, a wrong key, a user key and the admin key."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import SecretStr
from starlette._utils import get_route_path
from starlette.routing import Route

from app.api.access import ADMIN_PATHS, DOCUMENT_PATHS, PUBLIC_PATHS, route_path
from app.api.deps import get_admin_id
from app.main import create_app
from app.telemetry.pseudonyms import Pseudonyms
from tests.access_walk import faults, walk
from tests.conftest import ServeFactory, SettingsFactory
from tests.helpers import (
    ADMIN_ID,
    ADMIN_KEY,
    PSEUDONYM_SECRET,
    USER_KEY,
    client_of,
    error_body,
    read_log,
    sample,
)

pytestmark = pytest.mark.anyio
KEYS: dict[str, str | None] = {
    "none": None,
    "wrong": "wrong-key-0123456789abc",
    "user": USER_KEY,
    "admin": ADMIN_KEY,
}


def _routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every method of every route the app has, documented or not."""
    return [
        (method, route.path)
        for route in app.routes
        if isinstance(route, Route)
        for method in sorted(route.methods or ())
    ]


async def test_every_route_refuses_a_missing_or_wrong_key_and_admits_its_own(
    app: FastAPI,
) -> None:
    routes = _routes(app)
    assert {p for _, p in routes} >= PUBLIC_PATHS - {"/metrics/replicas"} | ADMIN_PATHS
    async with client_of(app, key=None) as client:
        answers = await walk(client, routes, KEYS)
    assert faults(answers) == []
    assert len(answers) == len(set(routes)) >= 15


async def test_a_path_no_route_serves_is_refused_before_it_is_found(app: FastAPI) -> None:
    async with client_of(app, key=None) as anonymous, client_of(app) as user:
        refused = await anonymous.post("/no-such-route", json={})
        slash = await anonymous.post("/generate/", json={"prompt": "hi"})
        found = await user.post("/no-such-route", json={})
    assert (refused.status_code, slash.status_code, found.status_code) == (401, 401, 404)
    assert refused.headers["www-authenticate"] == "Bearer"
    assert refused.json() == error_body(
        "unauthorized", "missing API key: send `Authorization: Bearer <key>`"
    )


async def test_a_refusal_on_v1_is_in_openais_envelope_and_counted_not_logged(
    serve: ServeFactory,
) -> None:
    async with (
        serve() as (app, _, service),
        client_of(app, key="wrong-key-0123456789abc") as wrong,
    ):
        answer = await wrong.post("/v1/chat/completions", json={"messages": "not even valid"})
        rows = read_log(service.settings, service)
        counted = sample(service, "bankllm_unauthenticated_total", api="chat")
    assert answer.status_code == 401
    assert answer.json() == {
        "error": {
            "message": "invalid API key",
            "type": "authentication_error",
            "param": None,
            "code": "unauthorized",
        }
    }
    assert [r for r in rows if r.get("type") == "request"] == []  # anyone can send them
    assert counted == 1


async def test_refused_admin_attempts_with_a_real_key_are_audited(serve: ServeFactory) -> None:
    """A user key at an admin path is audited; a wrong key or none is only counted, so no
    one without a key can write to the trail."""
    async with serve() as (app, client, service), client_of(app, key=None) as anonymous:
        by_user = await client.post("/switch", json={"model": "custom-b"})
        by_wrong = await client.post(
            "/shadow", json={"model": "custom-b"}, headers={"Authorization": "Bearer not-it"}
        )
        by_no_one = await anonymous.post("/switch", json={"model": "custom-b"})
        rows = read_log(service.settings, service, audit=True)
        counted = sample(service, "bankllm_unauthenticated_total", api="other")
    rows = [r for r in rows if r["type"] == "admin"]
    assert [a.status_code for a in (by_user, by_wrong, by_no_one)] == [403, 401, 401]
    pseudonyms = Pseudonyms.keyed(SecretStr(PSEUDONYM_SECRET))
    assert [(r["action"], r["by"], r["result"], r["error_type"]) for r in rows[1:]] == [
        ("switch", pseudonyms.key_id(USER_KEY), "denied", "forbidden"),
    ]  # after the start
    assert counted == 2


async def test_the_admin_in_the_audit_is_the_key_that_passed(serve: ServeFactory) -> None:
    async with serve() as (app, _, service), client_of(app, key=ADMIN_KEY) as admin:
        answer = await admin.post("/switch", json={"model": "custom-b"})
        rows = read_log(service.settings, service, audit=True)
    assert answer.status_code == 200
    switches = [r for r in rows if r.get("type") == "admin" and r["action"] == "switch"]
    assert {r["by"] for r in switches} == {ADMIN_ID}


@pytest.mark.parametrize(
    ("path", "root"),
    [
        ("/generate", ""),
        ("/api/generate", "/api"),
        ("/api", "/api"),
        ("/api/", "/api"),
        ("/apigenerate", "/api"),
        ("/health", "/api"),
        ("/api/api/switch", "/api"),
    ],
)
def test_the_path_checked_is_the_path_the_router_matches(path: str, root: str) -> None:
    scope = {"type": "http", "path": path, "root_path": root}
    assert route_path(scope) == get_route_path(scope)


async def test_every_route_that_names_its_admin_is_an_admin_path(app: FastAPI) -> None:
    def needs(dependant: Dependant) -> bool:
        return any(d.call is get_admin_id or needs(d) for d in dependant.dependencies)

    named = {r.path for r in app.routes if isinstance(r, APIRoute) and needs(r.dependant)}
    assert named == ADMIN_PATHS


def test_a_service_with_no_keys_starts_only_in_development(make_settings: SettingsFactory) -> None:
    for keys in ({"api_keys": ""}, {"api_keys": "", "admin_api_key": None}):
        with pytest.raises(ValueError, match="or DEV_MODE=true to serve a development copy"):
            create_app(make_settings(eval_api_keys="", **keys))


async def test_in_development_with_no_keys_every_route_is_open(serve: ServeFactory) -> None:
    async with (
        serve(api_keys="", eval_api_keys="", admin_api_key=None, dev_mode=True) as (app, _, _),
        client_of(app, key=None) as anyone,
    ):
        answers = [
            (await anyone.get("/models")).status_code,
            (await anyone.post("/switch", json={"model": "custom-b"})).status_code,
        ]
    assert answers == [200, 200]


def test_public_paths_are_few_and_named() -> None:
    assert {"/health", "/health/live", "/metrics", "/metrics/replicas"} == PUBLIC_PATHS
    assert {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"} == DOCUMENT_PATHS
