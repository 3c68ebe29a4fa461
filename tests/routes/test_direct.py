from __future__ import annotations

from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Body, Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.routing import Route

from app.main import create_app
from app.openai_api.protocol import ChatCompletionRequest
from app.routes._direct import DirectRoute
from app.schemas import GenerateRequest
from tests.conftest import SettingsFactory

pytestmark = pytest.mark.anyio


async def _refuse_without_key(request: Request) -> None:
    if "x-key" not in request.headers:
        raise HTTPException(401, "no key")


async def _caller(request: Request) -> str:
    return request.headers.get("x-caller", "nobody")


async def _answer(
    body: GenerateRequest, request: Request, caller: Annotated[str, Depends(_caller)]
) -> JSONResponse:
    return JSONResponse({"body": body.model_dump(), "caller": caller, "path": request.url.path})


async def _chat(body: ChatCompletionRequest, request: Request) -> JSONResponse:
    return JSONResponse({"body": body.model_dump(), "path": request.url.path})


def _app(route_class: type[APIRoute]) -> FastAPI:
    """The same endpoints, behind FastAPI's own routes or direct ones."""
    router = APIRouter(dependencies=[Depends(_refuse_without_key)], route_class=route_class)
    router.post("/answer")(_answer)
    router.post("/chat")(_chat)
    app = FastAPI()
    app.include_router(router)

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return JSONResponse({"errors": jsonable_encoder(exc.errors())}, 422)

    async def refused(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        cause = type(exc.__cause__).__name__ if exc.__cause__ else None
        return JSONResponse({"detail": exc.detail, "cause": cause}, exc.status_code)

    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, refused)
    return app


JSON = {"content-type": "application/json", "x-key": "k"}
BODIES: list[tuple[bytes, dict[str, str]]] = [
    (b'{"prompt": "my card", "max_tokens": 8}', JSON),
    (b'{"prompt": "my card"}', {**JSON, "x-caller": "eval"}),
    (b'{"prompt": "my card"}', {"content-type": "application/json; charset=utf-8", "x-key": "k"}),
    (b'{"prompt": "my card"}', {"content-type": "application/vnd.api+json", "x-key": "k"}),
    (b'{"prompt": "my card"}', {"content-type": "text/plain", "x-key": "k"}),
    (b'{"prompt": "my card"}', {"x-key": "k"}),
    (b'{"prompt": "my card"}', {"content-type": "json", "x-key": "k"}),
    (b"", JSON),
    (b"{", JSON),
    (b'{"prompt": "a", }', JSON),
    (b"\xff\xfe{}", JSON),
    (b"[]", JSON),
    (b"null", JSON),
    (b"{}", JSON),
    (b'{"prompt": 5}', JSON),
    (b'{"prompt": "a", "max_tokens": "5"}', JSON),
    (b'{"prompt": "a", "max_tokens": true}', JSON),
    (b'{"prompt": "a", "stop": ["x", 3], "nope": 1}', JSON),
    (b'{"prompt": "a", "temperature": "hot", "seed": 1.5}', JSON),
    (b"[" * 3000, JSON),  # nested deeper than the parser goes
    (b'{"prompt": "a", "seed": ' + b"9" * 5000 + b"}", JSON),  # more digits than int() takes
    # bodies the fast parser refuses or reads otherwise, and FastAPI's (json) then reads
    (b'\xef\xbb\xbf{"prompt": "my card"}', JSON),  # a UTF-8 byte-order mark
    (b'{"prompt": "my card"} x', JSON),
    (b"[" * 300 + b"]" * 300, JSON),
    (b'{"prompt": "my card"}', {"content-type": "application/json"}),  # no key
    (b"{", {"content-type": "application/json"}),  # no key, and a bad body
]
CHAT = [
    b'{"model": "custom", "messages": [{"role": "user", "content": "hi"}], "stream": true}',
    b'{"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}], "n": 1}',
    b'{"messages": [{"role": "robot", "content": "hi"}], "temperature": "0"}',
    b'{"messages": "hi", "max_completion_tokens": 1.0}',
    b'{"messages": [], "unknown": {"ignored": true}}',
    b"{}",
]


@pytest.mark.parametrize(
    ("path", "body", "headers"),
    [("/answer", body, headers) for body, headers in BODIES] + [("/chat", c, JSON) for c in CHAT],
)
async def test_a_direct_route_answers_every_body_as_fastapi_does(
    path: str, body: bytes, headers: dict[str, str]
) -> None:
    answers = []
    for route_class in (APIRoute, DirectRoute):
        transport = httpx.ASGITransport(app=_app(route_class))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.post(path, content=body, headers=headers)
        answers.append((response.status_code, response.json()))
    fastapi, direct = answers
    assert direct == fastapi


async def test_a_dependency_twice_on_a_route_is_called_once_as_by_fastapi() -> None:
    """The key check of a router, included in another that has it too."""
    calls: list[str] = []

    async def check(request: Request) -> None:
        calls.append(request.url.path)

    for route_class in (APIRoute, DirectRoute):
        inner = APIRouter(dependencies=[Depends(check)], route_class=route_class)
        inner.post("/answer")(_answer)
        outer = APIRouter(dependencies=[Depends(check)])
        outer.include_router(inner)
        app = FastAPI()
        app.include_router(outer)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.post("/answer", json={"prompt": "my card"})
        assert response.status_code == 200
    assert calls == ["/answer", "/answer"]  # once by each


def test_a_direct_route_is_documented_as_fastapi_documents_it() -> None:
    documents = [_app(route_class).openapi() for route_class in (APIRoute, DirectRoute)]
    assert documents[1] == documents[0]


async def _with_query(body: GenerateRequest, request: Request, page: int) -> JSONResponse:
    return JSONResponse({})


async def _without_request(body: GenerateRequest) -> JSONResponse:
    return JSONResponse({})


def _sync(body: GenerateRequest, request: Request) -> JSONResponse:
    return JSONResponse({})


async def _sync_dependency(
    body: GenerateRequest, request: Request, caller: Annotated[str, Depends(lambda: "x")]
) -> JSONResponse:
    return JSONResponse({})


async def _embedded(body: Annotated[GenerateRequest, Body(embed=True)], request: Request) -> Any:
    return JSONResponse({})


async def _optional(request: Request, body: GenerateRequest | None = None) -> Any:
    return JSONResponse({})


@pytest.mark.parametrize(
    "endpoint", [_with_query, _without_request, _sync, _sync_dependency, _embedded, _optional]
)
def test_a_direct_route_refuses_an_endpoint_it_would_serve_differently(endpoint: Any) -> None:
    router = APIRouter(route_class=DirectRoute)
    with pytest.raises(TypeError, match="/answer: a direct route"):
        router.post("/answer")(endpoint)


def test_the_api_routes_are_matched_before_the_documentation_routes(
    make_settings: SettingsFactory,
) -> None:
    """A request is matched against the routes in order: /generate first, not after FastAPI's
    four documentation routes (each a regular expression tried on every request)."""
    app = create_app(make_settings())
    paths = [route.path for route in app.router.routes if isinstance(route, Route)]
    api = [route.path for route in app.router.routes if isinstance(route, APIRoute)]
    assert paths[: len(api)] == api
    assert paths[0] == "/generate"
    assert paths[len(api) :] == ["/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"]
