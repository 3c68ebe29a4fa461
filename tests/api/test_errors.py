from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import ServeFactory, SettingsFactory
from tests.helpers import client_of, error_body, read_log, sample

pytestmark = pytest.mark.anyio
ECHO_TEXT = "This is the echo model. It answers the same words to every prompt."


async def test_malformed_json_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/generate", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["error"]["type"] == "invalid_request"


async def test_a_missing_or_wrong_key_is_401(app: FastAPI) -> None:
    async with client_of(app, key=None) as anonymous, client_of(app, key="nope") as wrong:
        missing = await anonymous.post("/generate", json={"prompt": "hi"})
        invalid = await wrong.post("/generate", json={"prompt": "hi"})
        via_header = await anonymous.post(
            "/generate", json={"prompt": "hi"}, headers={"X-API-Key": "nope"}
        )
    assert (missing.status_code, invalid.status_code, via_header.status_code) == (401, 401, 401)
    assert missing.json() == error_body(
        "unauthorized", "missing API key: send `Authorization: Bearer <key>`"
    )
    assert invalid.json() == via_header.json() == error_body("unauthorized", "invalid API key")


async def test_a_body_over_the_limit_is_413(
    serve: ServeFactory, make_settings: SettingsFactory
) -> None:
    settings = make_settings(max_prompt_chars=10)
    async with serve(settings) as (_, client, _):
        declared = await client.post("/generate", json={"prompt": "x" * 20_000})

        async def chunks() -> Any:
            for _ in range(20):
                yield b"x" * 1000

        chunked = await client.post(
            "/generate", content=chunks(), headers={"content-type": "application/json"}
        )
    limit = settings.max_body_bytes
    assert declared.status_code == chunked.status_code == 413
    assert declared.json() == error_body(
        "payload_too_large", f"request body is larger than {limit} bytes", {"max_bytes": limit}
    )
    assert chunked.json() == declared.json()


async def test_unknown_routes_answer_in_the_envelope(client: httpx.AsyncClient) -> None:
    missing = await client.get("/nope")
    wrong_method = await client.get("/generate")
    assert (missing.status_code, wrong_method.status_code) == (404, 405)
    assert missing.json() == error_body("not_found", "Not Found")
    assert wrong_method.json() == error_body("method_not_allowed", "Method Not Allowed")


async def test_requests_refused_before_the_pipeline_get_their_rows_but_keyless_ones_a_count(
    serve: ServeFactory, make_settings: SettingsFactory
) -> None:
    settings = make_settings(max_prompt_chars=10)
    async with serve(settings) as (app, client, service):
        async with client_of(app, key=None) as anonymous:
            unauthorized = await anonymous.post("/generate", json={"prompt": "SECRET-1 card"})
        too_large = await client.post("/generate", json={"prompt": "SECRET-2 " * 3000})
        invalid = await client.post("/generate", json={"prompt": "SECRET-3", "max_tokens": "many"})
        elsewhere = await client.post("/switch", json={})  # no row: it generates nothing
        rows = read_log(settings, service)
        refused = {
            status: sample(
                service, "bankllm_requests_total", model="custom", backend="custom", status=status
            )
            for status in ("rejected", "bad_request")
        }
        keyless = sample(service, "bankllm_unauthenticated_total", api="generate")
    statuses = [r.status_code for r in (unauthorized, too_large, invalid, elsewhere)]
    assert statuses == [401, 413, 422, 403]
    assert [(r["model"], r["status"], r["error_type"], r["stream"]) for r in rows] == [
        ("custom", "bad_request", "payload_too_large", False),
        ("custom", "bad_request", "invalid_request", False),
    ]
    assert refused == {"rejected": 0, "bad_request": 2}  # none counts against the model
    assert keyless == 1
    assert "SECRET" not in settings.benchmark_log.read_text()


async def test_an_error_body_echoes_no_card_number_however_sent(
    client: httpx.AsyncClient,
) -> None:
    """A card as a JSON number, or split between the items of a list, is masked too."""
    card = 4111111111111111
    answers = [
        await client.post("/generate", json={"prompt": card}),
        await client.post("/generate", json={"prompt": "hi", "max_tokens": card}),
        await client.post("/generate", json={"prompt": ["4111 1111", "1111 1111"]}),
        await client.post("/generate", json={"prompt": "hi", "stop": ["4111 1111 1111 1111", ""]}),
    ]
    assert [a.status_code for a in answers] == [422] * 4
    for answer in answers:
        assert "1111" not in answer.text, answer.text
