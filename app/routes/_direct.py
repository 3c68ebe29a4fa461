"""A route that FastAPI documents from its endpoint like any other, and that answers without
FastAPI's per-request dependency solving: on the echo model that solving cost more than our
whole pipeline (the query string, the cookies and the headers parsed for every dependency, the
content type parsed by the `email` package).

It takes endpoints of one shape only: a JSON body (one pydantic model), the `Request`, and
dependencies that take the request alone (the key check, the pipeline). The body is read, parsed
and validated as FastAPI does, and refused with the same errors (a test holds the two equal);
any other shape is refused when the route is made, so a parameter is never silently lost."""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import pydantic_core
from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import request_response

from app.errors import ServiceError

Dependency = Callable[[Request], Awaitable[Any]]


@dataclass(frozen=True)
class _Plan:
    # each call once, with the endpoint's parameters it fills (FastAPI caches a dependency that
    # appears twice, the key check of a router included in another with it, say)
    dependencies: list[tuple[list[str], Dependency]]
    body_name: str
    body_model: type[BaseModel]
    request_name: str


class DirectRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **options: Any) -> None:
        super().__init__(path, endpoint, **options)
        # Starlette's wrapper, not FastAPI's: its exit stacks are for dependencies with `yield`
        self.app = request_response(self.get_route_handler())

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        plan = _plan(self.dependant, self.path)
        endpoint = self.dependant.call
        assert endpoint is not None

        async def answer(request: Request) -> Response:
            # In FastAPI's order: the body read and parsed (a malformed one is refused before
            # a missing key), then the dependencies (the router's first), then the validation.
            body = await _json_body(request)
            arguments: dict[str, Any] = {}
            for names, call in plan.dependencies:
                value = await call(request)
                for name in names:
                    arguments[name] = value
            arguments[plan.body_name] = _validated(plan.body_model, body)
            arguments[plan.request_name] = request
            response = await endpoint(**arguments)
            if not isinstance(response, Response):
                raise TypeError(f"{self.path}: a direct route's endpoint returns a Response")
            return response

        return answer


def _plan(dependant: Dependant, path: str) -> _Plan:
    if (
        len(dependant.body_params) != 1
        or dependant.request_param_name is None
        or _other_parameters(dependant)
        or not inspect.iscoroutinefunction(dependant.call)
    ):
        raise TypeError(f"{path}: a direct route's endpoint is async and takes a body, the request")
    field = dependant.body_params[0]
    model = field.field_info.annotation
    embedded = getattr(field.field_info, "embed", False)
    if not (isinstance(model, type) and issubclass(model, BaseModel)) or embedded:
        raise TypeError(f"{path}: a direct route's body is one pydantic model, not embedded")
    if not field.field_info.is_required():
        raise TypeError(f"{path}: a direct route's body is required")
    dependencies: dict[Dependency, list[str]] = {}  # in their first order
    for sub in dependant.dependencies:
        if (
            sub.call is None
            or not inspect.iscoroutinefunction(sub.call)
            or sub.request_param_name is None
            or sub.dependencies
            or sub.body_params
            or _other_parameters(sub)
        ):
            raise TypeError(f"{path}: a direct route's dependencies are async, of the request")
        if not sub.use_cache and sub.call in dependencies:
            raise TypeError(f"{path}: a direct route calls each dependency once a request")
        names = dependencies.setdefault(sub.call, [])
        if sub.name is not None:
            names.append(sub.name)
    plan = [(names, call) for call, names in dependencies.items()]
    return _Plan(plan, field.name, model, dependant.request_param_name)


def _other_parameters(dependant: Dependant) -> bool:
    return bool(
        dependant.path_params
        or dependant.query_params
        or dependant.header_params
        or dependant.cookie_params
        or dependant.websocket_param_name
        or dependant.http_connection_param_name
        or dependant.response_param_name
        or dependant.background_tasks_param_name
        or dependant.security_scopes_param_name
    )


async def _json_body(request: Request) -> Any:
    """The body as FastAPI reads it: JSON when it says it is (by its Content-Type), its bytes
    when it says it is something else or says nothing, None when there is none."""
    try:
        data = await _read(request)
        if not data:
            return None
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        kind, _, subtype = media.partition("/")
        if kind != "application" or not (subtype == "json" or subtype.endswith("+json")):
            return data
        try:  # pydantic-core's parser, 3x faster than json's for the bodies that it reads;
            # its cache of strings kept for keys only: a prompt must not outlive its request
            return pydantic_core.from_json(data, cache_strings="keys")
        except ValueError:  # FastAPI's own, for its very error (or a body only it reads)
            return json.loads(data)
    except json.JSONDecodeError as exc:
        error = {
            "type": "json_invalid",
            "loc": ("body", exc.pos),
            "msg": "JSON decode error",
            "input": {},
            "ctx": {"error": exc.msg},
        }
        raise RequestValidationError([error], body=exc.doc) from exc
    except (ServiceError, HTTPException):  # a body too large or too slow (BodyLimits)
        raise
    except Exception as exc:  # the client left part way, bytes not UTF-8, JSON nested too deep
        raise HTTPException(400, "There was an error parsing the body") from exc


async def _read(request: Request) -> bytes:
    """The body as Starlette's `Request.body()` reads it, from the ASGI messages, without its
    async generator (whose turns cost more than reading a body that came in one message)."""
    chunks: list[bytes] = []
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    # kept where Starlette keeps it, so a later `request.body()` reads it rather than waits
    request._body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    return request._body


def _validated(model: type[BaseModel], body: Any) -> BaseModel:
    if body is None:
        missing = {"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}
        raise RequestValidationError([missing], body=body)
    try:  # the model's validator itself: `model_validate`'s wrapper is a third of its time
        validated: BaseModel = model.__pydantic_validator__.validate_python(
            body, from_attributes=True
        )
        return validated
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors, body=body) from None
