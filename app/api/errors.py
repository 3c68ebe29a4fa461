"""Every exception mapped to HTTP in one place, in our envelope, or in OpenAI's on `/v1`. A
request to a generating route that is refused before it reaches the pipeline (a body too large
or malformed) is recorded as such: its metric sample and its log row. One the key check
refused is only counted (`bankllm_unauthenticated_total`), or audited at an admin path."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match

from app.api.access import ADMIN_PATHS, REFUSED_KEY, route_path
from app.api.openai.errors import openai_body, openai_status
from app.banking.pii import redact, redact_all
from app.errors import (
    BadRequest,
    BodyTimeout,
    Forbidden,
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ServiceError,
    Unauthorized,
    UnsupportedMediaType,
    json_safe,
)

logger = logging.getLogger(__name__)
ErrorHandler = Callable[[Request, Exception], Awaitable[JSONResponse]]
_BY_STATUS: dict[int, type[ServiceError]] = {400: BadRequest, 404: NotFound, 405: MethodNotAllowed}
_REFUSED_BEFORE_THE_PIPELINE = (
    PayloadTooLarge,
    BodyTimeout,
    RequestValidationError,
)


def error_response(error: ServiceError, openai: bool = False) -> JSONResponse:
    """The error in its envelope, with any customer number it echoes (a bad field's value, an
    unknown model's name) masked: an error body is logged by clients and proxies."""
    body = _masked(openai_body(error) if openai else error.body())
    status = openai_status(error) if openai else error.status_code
    return JSONResponse(body, status_code=status, headers=error.headers)


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value).text
    if isinstance(value, int | float) and not isinstance(value, bool) and abs(value) >= 1e7:
        masked = redact(str(int(value))).text  # a card sent as a JSON number is a card
        return value if masked == str(int(value)) else masked
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        texts = [v for v in value if isinstance(v, str)]
        read = iter(redact_all(texts).texts)  # read together: a number split between items
        return [next(read) if isinstance(v, str) else _masked(v) for v in value]
    return value


def service_error(request: Request, exc: Exception) -> ServiceError:
    """The domain error an exception means to the caller."""
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, RequestValidationError):
        return _not_json(request, exc) or _invalid_body(exc)
    if isinstance(exc, HTTPException):
        if isinstance(exc.__cause__, ServiceError):  # raised while FastAPI read the body
            return exc.__cause__
        kind = _BY_STATUS.get(exc.status_code) or _http_error(exc.status_code)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed(request)
        return kind(str(exc.detail), headers=headers)
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return InternalError()


def _not_json(request: Request, exc: RequestValidationError) -> ServiceError | None:
    """A body refused because it came as another media type: say so (415), not 422."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not media or media == "application/json" or media.endswith("+json"):
        return None
    if not any(e["loc"][:1] == ("body",) for e in exc.errors()):
        return None
    return UnsupportedMediaType(
        f"the body must be JSON, sent with Content-Type: application/json (not {media})",
        {"content_type": media},
    )


def _allowed(request: Request) -> str:
    """Every method of the path: Starlette's 405 names only those of the first route that
    matched it, and a path (/shadow) may have a route per method."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, BaseRoute) and route.matches(request.scope)[0] != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


@functools.cache
def _http_error(status: int) -> type[ServiceError]:
    """For a status Starlette raised that none of our errors has: keep the status."""
    outcome = "bad_request" if status < 500 else "upstream_error"
    fields = {"status_code": status, "type": "http_error", "outcome": outcome}
    return type(f"HTTPError{status}", (ServiceError,), fields)


# pydantic's words for a field the body's model does not have
_UNKNOWN_FIELD = "not a field of this API: refused, never ignored (docs/api.md lists the fields)"


def _invalid_body(exc: RequestValidationError) -> InvalidRequest:
    errors = [
        {k: v for k, v in e.items() if k in ("type", "loc", "msg", "input")} for e in exc.errors()
    ]
    for error in errors:
        if error["type"] == "extra_forbidden":
            error["msg"] = _UNKNOWN_FIELD
    message = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}" for e in errors
    )
    return InvalidRequest(message, json_safe(jsonable_encoder(errors)))


def _refused_access(request: Request, error: ServiceError, path: str, api: str) -> None:
    """A request the key check refused: counted, never a row (anyone can send them, and rows
    fill a disk). A real key refused at an admin path is the audit trail's; a wrong key is
    only counted, so no one without a key can write to the trail."""
    service = request.app.state.service
    if isinstance(error, Unauthorized):
        service.metrics.unauthenticated.labels(api).inc()
    presented = request.scope[REFUSED_KEY]
    if path in ADMIN_PATHS and presented is not None and isinstance(error, Forbidden):
        service.admin.audit.write(path.strip("/"), presented, "denied", error_type=error.type)


def add_error_handlers(app: FastAPI, recorded: Mapping[str, str]) -> ErrorHandler:
    """Route every exception through one handler; refusals on the `recorded` paths get a row
    that names their API (path -> api). The handler is returned for the key check, which
    refuses before the app's own exception handling."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        error = service_error(request, exc)
        cause = exc.__cause__ if isinstance(exc, HTTPException) else exc
        path = route_path(request.scope)
        if REFUSED_KEY in request.scope:
            _refused_access(request, error, path, recorded.get(path, "other"))
        elif isinstance(cause, _REFUSED_BEFORE_THE_PIPELINE) and path in recorded:
            request.app.state.service.pipeline.refuse(error, recorded[path])
        return error_response(error, openai=path.startswith("/v1/"))

    for kind in (ServiceError, RequestValidationError, HTTPException, Exception):
        app.add_exception_handler(kind, handle)
    return handle
