"""Dependencies: the pipeline from the app's state, the settings, and the two kinds of key."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPBearer

from app.errors import Forbidden, Unauthorized
from app.pipeline import Pipeline
from app.settings import Settings
from app.telemetry.audit import OPEN, key_id

# Dependencies are `async def` on purpose: FastAPI runs a plain `def` dependency in a worker
# thread, a hop that cost this service a large share of its throughput under load.


async def get_pipeline(request: Request) -> Pipeline:
    pipeline: Pipeline = request.app.state.pipeline
    return pipeline


PipelineDep = Annotated[Pipeline, Depends(get_pipeline)]


async def get_settings_dep(pipeline: PipelineDep) -> Settings:
    return pipeline.settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]

# The key checks take the request alone, with no dependencies of their own: each one FastAPI
# solves costs a request about as much as our whole pipeline on the echo model. The two ways of
# presenting a key are put in the OpenAPI document by `app.openapi` instead.
BEARER = HTTPBearer(auto_error=False, description="`Authorization: Bearer <key>`")
API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False)


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.pipeline.settings
    return settings


def _presented_key(request: Request) -> str | None:
    """`Authorization: Bearer <key>` or `X-API-Key: <key>`."""
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key") or None


def _matches(key: str, candidates: list[str]) -> bool:
    # compare against every candidate, so timing does not tell which one (or whether) matched
    found = False
    for candidate in candidates:
        found |= secrets.compare_digest(key.encode(), candidate.encode())
    return found


def _admin_keys(settings: Settings) -> list[str]:
    return [settings.admin_api_key.get_secret_value()] if settings.admin_api_key else []


async def require_api_key(request: Request) -> None:
    """A user or admin key, unless API_KEYS is empty (auth off)."""
    settings = _settings(request)
    user_keys = [k.get_secret_value() for k in settings.api_keys]
    if not user_keys:
        return
    key = _presented_key(request)
    if key is None:
        raise Unauthorized("missing API key: send `Authorization: Bearer <key>`")
    if not _matches(key, user_keys + _admin_keys(settings)):
        raise Unauthorized("invalid API key")


async def require_admin_key(request: Request) -> str:
    """The admin key; its id (a short hash) names the admin in the audit trail. With no key of
    any kind configured (local development) anyone may, as `open`."""
    settings = _settings(request)
    user_keys = [k.get_secret_value() for k in settings.api_keys]
    admin_keys = _admin_keys(settings)
    if not admin_keys and not user_keys:
        return OPEN
    key = _presented_key(request)
    if key is None:
        raise Unauthorized("missing admin key: send `Authorization: Bearer <admin key>`")
    if _matches(key, admin_keys):
        return key_id(key)
    if _matches(key, user_keys):
        raise Forbidden("this route needs the admin key; a user API key cannot switch models")
    raise Unauthorized("invalid admin key")


ApiKey = Depends(require_api_key)
AdminKey = Depends(require_admin_key)
AdminId = Annotated[str, Depends(require_admin_key)]  # the admin key's id, for the audit
