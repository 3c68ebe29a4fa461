"""Errors on /v1: the openai SDK's own exception for each, in OpenAI's envelope."""

from __future__ import annotations

from typing import Any
from unittest.mock import ANY

import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from app.service import Service
from app.settings import Settings
from tests.conftest import ServeFactory
from tests.helpers import USER_KEY, openai_client, read_log, sample

pytestmark = pytest.mark.anyio
ECHO_TEXT = "This is the echo model. It answers the same words to every prompt."
QUESTION: list[ChatCompletionMessageParam] = [{"role": "user", "content": "where is my card"}]
CHAT: dict[str, Any] = {"messages": QUESTION}


@pytest.mark.parametrize(
    ("overrides", "ask", "error", "status", "body"),
    [
        (
            {},
            {"model": "nope"},
            openai.NotFoundError,
            404,
            {
                "message": "no model named 'nope'",
                "type": "not_found_error",
                "param": "model",
                "code": "model_not_found",
            },
        ),
        (
            {},
            {"model": "custom"},
            openai.ConflictError,
            409,
            {
                "message": ANY,
                "type": "invalid_request_error",
                "param": "model",
                "code": "model_not_active",
            },
        ),
        (
            {},
            {"n": 2},
            openai.BadRequestError,
            400,
            {
                "message": "n: Value error, only n=1 is served: one choice per request",
                "type": "invalid_request_error",
                "param": "n",
                "code": "invalid_request",
            },
        ),
        (
            {},
            {"logprobs": True},
            openai.BadRequestError,
            400,
            {
                "message": "logprobs: model 'echo' (echo) gives no log probabilities of its "
                "reply; docs/api.md lists the backends that do",
                "type": "invalid_request_error",
                "param": "logprobs",
                "code": "invalid_request",
            },
        ),
        (
            {},
            {"max_tokens": 10_000},
            openai.BadRequestError,
            400,
            {
                "message": "max_tokens: must be between 1 and 512",
                "type": "invalid_request_error",
                "param": "max_tokens",
                "code": "invalid_request",
            },
        ),
        (
            {"active_model": "broken"},
            {},
            openai.InternalServerError,
            503,
            {"message": ANY, "type": "server_error", "param": None, "code": "model_unavailable"},
        ),
    ],
)
async def test_each_error_reaches_the_sdk_as_its_exception_and_openai_s_envelope(
    serve: ServeFactory,
    overrides: dict[str, Any],
    ask: dict[str, Any],
    error: type[openai.APIStatusError],
    status: int,
    body: dict[str, Any],
) -> None:
    async with serve(**({"active_model": "echo"} | overrides)) as (app, _, service):
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app)) as http:
            sdk = openai.AsyncOpenAI(
                base_url="http://testserver/v1", api_key=USER_KEY, max_retries=0, http_client=http
            )
            with pytest.raises(error) as raised:
                await sdk.chat.completions.create(**({"model": "echo", "messages": QUESTION} | ask))
        rows = read_log(service.settings, service)
    assert raised.value.status_code == status
    assert raised.value.response.json() == {"error": body}
    assert [r["api"] for r in rows] == ["chat"]


async def test_a_wrong_key_is_an_authentication_error(
    echo_server: tuple[str, Settings, Service],
) -> None:
    url, _, service = echo_server
    async with openai_client(url, key="nope") as sdk:
        with pytest.raises(openai.AuthenticationError) as raised:
            await sdk.chat.completions.create(model="echo", messages=QUESTION)
    assert raised.value.response.json() == {
        "error": {
            "message": "invalid API key",
            "type": "authentication_error",
            "param": None,
            "code": "unauthorized",
        }
    }
    assert sample(service, "bankllm_unauthenticated_total", api="chat") == 1


async def test_a_full_queue_is_a_rate_limit_error_with_retry_after(
    serve: ServeFactory,
) -> None:
    async with serve(active_model="echo", max_concurrency=1, max_queue=0) as (app, _, service):
        held = service.pipeline.stream("hold the only slot")
        await anext(held)
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app)) as http:
            sdk = openai.AsyncOpenAI(
                base_url="http://testserver/v1", api_key=USER_KEY, max_retries=0, http_client=http
            )
            with pytest.raises(openai.RateLimitError) as raised:
                await sdk.completions.create(model="echo", prompt="hi")
        await held.aclose()
        queue_full = sample(
            service, "bankllm_requests_total", model="echo", backend="echo", status="rejected"
        )
    assert raised.value.response.headers["retry-after"] == "1"
    assert raised.value.response.json()["error"]["code"] == "queue_full"
    assert queue_full == 1


async def test_a_max_tokens_overridden_by_max_completion_tokens_is_checked_and_logged(
    serve: ServeFactory,
) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}
    async with serve(active_model="echo") as (_, client, service):
        refused = await client.post(
            "/v1/chat/completions", json=body | {"max_completion_tokens": 5}
        )
        rows = read_log(service.settings, service)
    assert (refused.status_code, refused.json()["error"]["param"]) == (400, "max_tokens")
    assert [(r["api"], r["status"], r["error_type"]) for r in rows] == [
        ("chat", "bad_request", "invalid_request")
    ]
