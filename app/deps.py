"""Dependencies: the pipeline from the app's state, the settings, and the two kinds of key."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
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


@dataclass(frozen=True)
class _Keys:
    """A settings' keys as the checks compare them, worked out once, not on every request."""

    settings: Settings  # whose keys these are
    user: tuple[bytes, ...]
    admin: tuple[bytes, ...]


_known: list[_Keys] = []  # the keys of the settings seen last (one app's, but for tests)


def _keys(request: Request) -> _Keys:
    settings: Settings = request.app.state.pipeline.settings
    if _known and _known[0].settings is settings:
        return _known[0]
    keys = _Keys(
        settings,
        tuple(k.get_secret_value().encode() for k in settings.api_keys),
        (settings.admin_api_key.get_secret_value().encode(),) if settings.admin_api_key else (),
    )
    _known[:] = [keys]
    return keys


def _presented_key(request: Request) -> str | None:
    """`Authorization: Bearer <key>` or `X-API-Key: <key>`."""
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key") or None


def _matches(key: str, *candidates: tuple[bytes, ...]) -> bool:
    # compare against every candidate, so timing does not tell which one (or whether) matched
    presented = key.encode()
    found = False
    for keys in candidates:
        for candidate in keys:
            found |= secrets.compare_digest(presented, candidate)
    return found


async def require_api_key(request: Request) -> None:
    """A user or admin key, unless API_KEYS is empty (auth off)."""
    keys = _keys(request)
    if not keys.user:
        return
    key = _presented_key(request)
    if key is None:
        raise Unauthorized("missing API key: send `Authorization: Bearer <key>`")
    if not _matches(key, keys.user, keys.admin):
        raise Unauthorized("invalid API key")


async def require_admin_key(request: Request) -> str:
    """The admin key; its id (a short hash) names the admin in the audit trail. With no key of
    any kind configured (local development) anyone may, as `open`."""
    keys = _keys(request)
    if not keys.admin and not keys.user:
        return OPEN
    key = _presented_key(request)
    if key is None:
        raise Unauthorized("missing admin key: send `Authorization: Bearer <admin key>`")
    if _matches(key, keys.admin):
        return key_id(key)
    if _matches(key, keys.user):
        raise Forbidden("this route needs the admin key; a user API key cannot switch models")
    raise Unauthorized("invalid admin key")


ApiKey = Depends(require_api_key)
AdminKey = Depends(require_admin_key)
AdminId = Annotated[str, Depends(require_admin_key)]  # the admin key's id, for the audit
