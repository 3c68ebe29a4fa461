from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any
from unittest.mock import ANY

import httpx
import pytest
from fastapi import FastAPI

from app.api.routes.generate import OPTIONS
from app.api.schemas import GeneratePublic, GenerateRequest
from app.backends.protocol import Message
from app.service import Service
from app.settings import Settings
from tests.conftest import ServeFactory, SettingsFactory
from tests.helpers import (
    PSEUDONYM_SECRET,
    USER_KEY,
    error_body,
    parse_sse,
    read_log,
    sample,
)
from tests.memory import Memory

pytestmark = pytest.mark.anyio
ECHO_TEXT = "This is the echo model. It answers the same words to every prompt."


async def test_generate_answers_from_the_active_model(
    client: httpx.AsyncClient, service: Service
) -> None:
    request = {"prompt": "my card has not arrived", "max_tokens": 30, "temperature": 0}
    response = await client.post("/generate", json=request)
    expected = await service.pipeline.generate(
        "my card has not arrived", max_tokens=30, temperature=0
    )
    assert response.status_code == 200
    assert response.json() == {**expected.fields(), "id": ANY, "latency_ms": ANY, "ttft_ms": ANY}
    assert response.json()["model"] == "custom"
    assert response.json()["id"].startswith("gen-")


def test_every_field_of_a_request_but_its_turns_stream_label_and_user_is_an_option() -> None:
    context = {"prompt", "earlier", "stream", "label", "user"}
    assert set(GenerateRequest.model_fields) - context == set(OPTIONS)


async def test_generate_whole_body_from_the_echo_model(
    serve: ServeFactory, make_settings: SettingsFactory
) -> None:
    async with serve(active_model="echo") as (_, client, _):
        response = await client.post("/generate", json={"prompt": "where is my card"})
    assert response.status_code == 200
    assert response.json() == {
        "id": ANY,
        "model": "echo",
        "backend": "echo",
        "version": "fixed-reply-1",
        "text": ECHO_TEXT,
        "intent": "card_arrival",
        "finish_reason": "stop",
        "prompt_tokens": 4,
        "completion_tokens": 15,
        "latency_ms": ANY,
        "ttft_ms": ANY,
        "fallback_from": None,
        "handoff": None,
        "confidence": None,
    }


async def test_a_whole_answer_is_its_documented_schema_field_for_field(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """The route renders the pipeline's result as is: its fields must stay GeneratePublic's."""
    body = (await client.post("/generate", json={"prompt": "I lost my card"})).json()
    documented = app.openapi()["components"]["schemas"]["GeneratePublic"]["properties"]
    assert list(body) == list(documented)
    assert GeneratePublic.model_validate(body).model_dump() == body


async def test_a_stream_reassembles_to_the_plain_answer(client: httpx.AsyncClient) -> None:
    request = {"prompt": "I lost my card", "max_tokens": 40, "temperature": 0.9, "seed": 5}
    plain = (await client.post("/generate", json=request)).json()
    response = await client.post("/generate", json={**request, "stream": True})
    events = parse_sse(response.text)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    *deltas, final, done = events
    assert done == "[DONE]"
    assert all(set(d) == {"id", "delta"} and d["id"] == final["id"] for d in deltas)
    assert "".join(d["delta"] for d in deltas) == plain["text"]
    assert final == {k: v for k, v in plain.items() if k != "text"} | {
        "id": final["id"],
        "latency_ms": ANY,
        "ttft_ms": ANY,
    }


async def test_an_over_long_prompt_is_422_in_the_envelope(
    serve: ServeFactory,
    make_settings: SettingsFactory,
) -> None:
    async with serve(max_prompt_chars=10) as (_, client, _):
        response = await client.post("/generate", json={"prompt": "x" * 11})
    assert response.status_code == 422
    assert response.json() == error_body(
        "invalid_request",
        "prompt: must be 1 to 10 characters, got 11",
        [
            {
                "type": "string_length",
                "loc": ["body", "prompt"],
                "msg": "must be 1 to 10 characters, got 11",
                "input": 11,
            }
        ],
    )


async def test_invalid_fields_are_422_in_the_envelope(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/generate", json={"prompt": "hi", "temperature": 3, "stop": ["a", "b", "c", "d", "e"]}
    )
    assert response.status_code == 422
    assert response.json() == error_body(
        "invalid_request",
        "temperature: must be between 0 and 2; stop: at most 4 non-empty strings",
        [
            {
                "type": "value_error",
                "loc": ["body", "temperature"],
                "msg": "must be between 0 and 2",
                "input": 3.0,
            },
            {
                "type": "value_error",
                "loc": ["body", "stop"],
                "msg": "at most 4 non-empty strings",
                "input": ["a", "b", "c", "d", "e"],
            },
        ],
    )


async def test_a_stop_longer_than_64_characters_is_refused_on_both_apis(
    client: httpx.AsyncClient,
) -> None:
    long = "x" * 65
    plain = await client.post("/generate", json={"prompt": "hi", "stop": ["ok", long]})
    chat = await client.post(
        "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}], "stop": long},
    )
    assert (plain.status_code, chat.status_code) == (422, 400)
    assert plain.json() == error_body(
        "invalid_request",
        "stop.1: at most 64 characters",
        [
            {
                "type": "value_error",
                "loc": ["body", "stop", 1],
                "msg": "at most 64 characters",
                "input": 65,
            }
        ],
    )
    assert chat.json()["error"]["message"] == "stop.0: at most 64 characters"


async def test_a_wrong_type_is_422_naming_the_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/generate", json={"prompt": "hi", "max_tokens": "many"})
    assert response.status_code == 422
    assert response.json() == error_body(
        "invalid_request",
        "max_tokens: Input should be a valid integer",
        [
            {
                "type": "int_type",
                "loc": ["body", "max_tokens"],
                "msg": "Input should be a valid integer",
                "input": "many",
            }
        ],
    )


async def test_max_tokens_over_the_limit_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/generate", json={"prompt": "hi", "max_tokens": 513})
    assert response.status_code == 422
    assert response.json() == error_body(
        "invalid_request",
        "max_tokens: must be between 1 and 512",
        [
            {
                "type": "value_error",
                "loc": ["body", "max_tokens"],
                "msg": "must be between 1 and 512",
                "input": 513,
            }
        ],
    )


async def test_a_full_queue_is_429_with_retry_after(
    serve: ServeFactory, make_settings: SettingsFactory
) -> None:
    settings = make_settings(max_concurrency=1, max_queue=0, active_model="echo")
    async with serve(settings) as (_, client, service):
        held = service.pipeline.stream("hold the only slot")
        await anext(held)  # the slot stays taken while this stream is open
        response = await client.post("/generate", json={"prompt": "hi"})
        await held.aclose()
        after = await client.post("/generate", json={"prompt": "hi"})
        rows = read_log(settings, service)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    assert response.json() == error_body(
        "queue_full",
        "the server is at capacity (1 running, 0 queued); retry later",
        {"retry_after_s": 1},
    )
    assert after.status_code == 200
    assert [(r["status"], r["error_type"]) for r in rows] == [
        ("rejected", "queue_full"),
        ("cancelled", "cancelled"),
        ("ok", None),
    ]


async def test_a_slow_answer_is_504(serve: ServeFactory, make_settings: SettingsFactory) -> None:
    settings = make_settings(request_timeout_s=1e-9)
    async with serve(settings) as (_, client, service):
        response = await client.post("/generate", json={"prompt": "hi"})
        streamed = await client.post("/generate", json={"prompt": "hi", "stream": True})
        timeouts = sample(
            service, "bankllm_requests_total", model="custom", backend="custom", status="timeout"
        )
    assert response.status_code == streamed.status_code == 504
    assert (
        response.json()
        == streamed.json()
        == error_body("timeout", "no answer within REQUEST_TIMEOUT_S=1e-09 s")
    )
    assert timeouts == 2


async def test_unknown_fields_are_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/generate", json={"prompt": "hi", "model": "gemini"})
    assert response.status_code == 422
    assert response.json()["error"]["details"] == [
        {
            "type": "extra_forbidden",
            "loc": ["body", "model"],
            "msg": "not a field of this API: refused, never ignored (docs/api.md lists the fields)",
            "input": "gemini",
        }
    ]


async def test_generate_request_schema_is_documented(app: FastAPI) -> None:
    schema = app.openapi()["components"]["schemas"]["GenerateRequest"]
    assert list(schema["properties"]) == [
        "prompt",
        "earlier",
        "max_tokens",
        "temperature",
        "top_p",
        "stop",
        "stream",
        "seed",
        "label",
        "user",
    ]
    assert json.dumps(schema).count("exclusiveMinimum") == 1  # top_p > 0


async def test_earlier_turns_reach_the_model_before_the_prompt(
    serve: ServeFactory, memory_settings: SettingsFactory, memory: Memory
) -> None:
    earlier = ["I lost my card", "ok"]
    asked: dict[str, Any] = {"prompt": "when will the new one come?", "earlier": earlier}
    keys = {"api_keys": USER_KEY, "pseudonym_secret": PSEUDONYM_SECRET}
    async with serve(memory_settings(max_prompt_chars=50, **keys)) as (_, client, _):
        whole = await client.post("/generate", json=asked)
        streamed = await client.post("/generate", json={**asked, "stream": True})
        blank = await client.post("/generate", json={**asked, "earlier": ["fine", " "]})
        many = await client.post("/generate", json={**asked, "earlier": ["a"] * 9})
        long = await client.post("/generate", json={**asked, "earlier": ["x" * 30]})
    turns = tuple(Message("user", t) for t in (*earlier, asked["prompt"]))
    assert (whole.status_code, streamed.status_code) == (200, 200)
    assert memory.latest("mem").received[-2:] == [turns, turns]  # after its warm-up
    assert [r.status_code for r in (blank, many, long)] == [422, 422, 422]
    assert blank.json()["error"]["details"][0]["loc"] == ["body", "earlier", 1]
    assert many.json()["error"]["details"][0]["loc"] == ["body", "earlier"]
    assert long.json()["error"]["message"] == (
        "earlier: with the prompt, must be 1 to 50 characters, got 57"
    )


async def test_a_customer_s_id_is_kept_as_a_pseudonym_never_as_given(
    client: httpx.AsyncClient, service: Service, settings: Settings
) -> None:
    asked = [{"prompt": "my card has not arrived", "user": "customer-42"}, {"prompt": "hi"}]
    for body in asked:
        assert (await client.post("/generate", json=body)).status_code == 200
    too_long = await client.post("/generate", json={"prompt": "hi", "user": "x" * 257})
    rows = read_log(settings, service)
    # the same keyed pseudonym as the customer's on /v1: one customer's rows group together
    pseudonym = hmac.new(PSEUDONYM_SECRET.encode(), b"customer-42", hashlib.sha256)
    users = [r["user"] for r in rows if r["type"] == "request"]
    assert users == [pseudonym.hexdigest()[:16], None, None]  # the 422's body was never valid
    assert "customer-42" not in settings.benchmark_log.read_text()
    assert too_long.status_code == 422
    assert "user" in too_long.json()["error"]["message"]
