"""Who may call what, checked in one place that every request passes: an ASGI middleware ahead
of routing. A few paths are public and a few need the admin key; every other path, one added
later or one that matches no route at all, needs a key. Routes declare nothing about keys."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import Forbidden, ServiceError, Unauthorized
from app.settings import Settings
from app.telemetry.audit import OPEN
from app.telemetry.pseudonyms import Pseudonyms

# Probes and scrapes: a load balancer and Prometheus carry no key.
PUBLIC_PATHS = frozenset({"/health", "/health/live", "/metrics", "/metrics/replicas"})
# The API's documents (when DOCS_ENABLED): they describe the API, they answer nothing.
DOCUMENT_PATHS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
ADMIN_PATHS = frozenset({"/switch", "/shadow"})
ADMIN_ONLY = "this route needs the admin key; a user API key cannot use it"
CALLER = "bankllm.caller"  # the ASGI scope's key under which a passed request's caller travels
# and a refused request's key, by its pseudonym (None: it sent none): the audit's `by`
REFUSED_KEY = "bankllm.refused_key"

Refuse = Callable[[Request, ServiceError], Awaitable[Response]]
Role = Literal["open", "user", "evaluator", "admin"]


@dataclass(frozen=True)
class Caller:
    """Who a request came from: `open` when no key is configured (local development)."""

    role: Role
    key_id: str  # the key's pseudonym (the audit trail's `by`), or `open`

    @property
    def may_label(self) -> bool:
        """Whether the caller's `label`s count toward accuracy: an evaluation's or an admin's."""
        return self.role != "user"


def route_path(scope: Scope) -> str:
    """The path the router matches: the request's path less the app's root path (Starlette's
    rule, which a test holds this to)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if not root or not path.startswith(root):
        return path
    if path == root:
        return ""
    return path[len(root) :] if path[len(root)] == "/" else path


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path in DOCUMENT_PATHS


class KeyCheck:
    """Refuses a request without the key its path needs (401, 403 for a user key on an admin
    path) before any route reads it; a request that passes carries its `Caller` in its scope.
    Refusals are answered by `refuse`, the app's one error handler, so they are shaped and
    recorded as every other error is."""

    def __init__(self, app: ASGIApp, settings: Settings, refuse: Refuse):
        self.app = app
        self._refuse = refuse
        self._user = tuple(k.get_secret_value().encode() for k in settings.api_keys)
        self._evaluator = tuple(k.get_secret_value().encode() for k in settings.eval_api_keys)
        admin = settings.admin_api_key
        self._admin = (admin.get_secret_value().encode(),) if admin else ()
        self._pseudonyms = Pseudonyms.keyed(settings.pseudonym_secret)
        keys = (*settings.api_keys, *settings.eval_api_keys, *([admin] if admin else []))
        # each configured key's id, worked out once: an HMAC a request costs more than its route
        self._ids = {
            k.get_secret_value(): self._pseudonyms.key_id(k.get_secret_value()) for k in keys
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):  # lifespan
            await self.app(scope, receive, send)
            return
        key = _presented_key(HTTPConnection(scope))
        try:
            scope[CALLER] = self._caller(route_path(scope), key)
        except ServiceError as refusal:
            scope[REFUSED_KEY] = None if key is None else self._pseudonyms.key_id(key)
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008, "reason": refusal.message})
                return
            response = await self._refuse(Request(scope, receive), refusal)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _caller(self, path: str, key: str | None) -> Caller:
        """The caller, or the refusal (raised) of a key this path does not take."""
        if not self._user and not self._evaluator and not self._admin:
            return Caller("open", OPEN)
        role = self._role(key)
        if path in ADMIN_PATHS:
            if role == "admin":
                return Caller(role, self._ids[key or ""])
            if role is not None:
                raise Forbidden(ADMIN_ONLY)
            raise _unauthorized(_missing("admin key") if key is None else "invalid admin key")
        if is_public(path) or not (self._user or self._evaluator):  # user routes open
            return Caller("open", OPEN)
        if role is None:
            raise _unauthorized(_missing("API key") if key is None else "invalid API key")
        return Caller(role, self._ids[key or ""])

    def _role(self, key: str | None) -> Literal["user", "evaluator", "admin"] | None:
        if key is None:
            return None
        presented = key.encode()
        # every candidate compared, so the time taken tells nothing of which one (or whether)
        admin = any([secrets.compare_digest(presented, k) for k in self._admin])
        evaluator = any([secrets.compare_digest(presented, k) for k in self._evaluator])
        user = any([secrets.compare_digest(presented, k) for k in self._user])
        return "admin" if admin else "evaluator" if evaluator else "user" if user else None


def _unauthorized(message: str) -> Unauthorized:
    # RFC 9110: a 401 names the scheme that would be accepted
    return Unauthorized(message, headers={"WWW-Authenticate": "Bearer"})


def _missing(what: str) -> str:
    placeholder = "admin key" if what == "admin key" else "key"
    return f"missing {what}: send `Authorization: Bearer <{placeholder}>`"


def _presented_key(connection: HTTPConnection) -> str | None:
    """`Authorization: Bearer <key>` or `X-API-Key: <key>`."""
    scheme, _, token = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return connection.headers.get("x-api-key") or None


def caller_of(connection: HTTPConnection) -> Caller:
    """The caller KeyCheck let through; none (the check not in the stack) refuses the request."""
    caller = connection.scope.get(CALLER)
    if not isinstance(caller, Caller):
        raise Unauthorized("no key check stands before this route")
    return caller
