"""A client that goes away cancels its generation (plain and streamed), at the ASGI level."""

from __future__ import annotations

import asyncio
import json

import pytest
from fastapi import FastAPI
from starlette.types import Message

from app.service import Service
from app.settings import Settings
from tests.helpers import USER_KEY, read_log

pytestmark = pytest.mark.anyio


async def _call(
    app: FastAPI, body: dict[str, object], leave_after_first_chunk: bool
) -> list[Message]:
    """One POST /generate whose client disconnects: at once (after sending its body), or
    after the first chunk of a streamed answer."""
    payload = json.dumps(body).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/generate",
        "raw_path": b"/generate",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            (b"authorization", f"Bearer {USER_KEY}".encode()),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
        "state": {},
        "app": app,
    }
    sent: list[Message] = []
    gone = asyncio.Event()
    body_sent = False
    if not leave_after_first_chunk:
        gone.set()

    async def receive() -> Message:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": payload, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and message.get("body"):
            gone.set()

    await app(scope, receive, send)
    return sent


async def test_a_streamed_answer_stops_when_the_client_leaves(
    app: FastAPI, service: Service, settings: Settings
) -> None:
    await service.switch("custom-random")
    request = {"prompt": "hello", "max_tokens": 100, "temperature": 1.0, "seed": 3}
    whole = await service.pipeline.generate("hello", max_tokens=100, temperature=1.0, seed=3)
    assert whole.completion_tokens == 100  # what an uninterrupted answer costs
    assert whole.text
    sent = await _call(app, {**request, "stream": True}, leave_after_first_chunk=True)
    row = read_log(settings, service)[-1]
    assert sent[0]["status"] == 200
    assert (row["status"], row["error_type"], row["stream"]) == ("cancelled", "cancelled", True)
    assert row["completion_tokens"] == 0  # no finish piece: the adapter never ran to the end


async def test_a_plain_request_is_cancelled_when_the_client_leaves(
    app: FastAPI, service: Service, settings: Settings
) -> None:
    sent = await _call(app, {"prompt": "hello", "max_tokens": 100}, leave_after_first_chunk=False)
    row = read_log(settings, service)[-1]
    assert sent[0]["status"] == 499
    assert (row["status"], row["stream"]) == ("cancelled", False)
    assert (
        service.metrics.registry.get_sample_value(
            "bankllm_requests_total",
            {"model": "custom", "backend": "custom", "status": "cancelled"},
        )
        == 1
    )
