"""The app behind a real uvicorn on 127.0.0.1: true streaming, and a client that hangs up."""

from __future__ import annotations

import json

import httpx

from app.settings import Settings
from tests.conftest import Served
from tests.helpers import USER_KEY


def _rows(settings: Settings) -> list[dict[str, object]]:
    path = settings.benchmark_log
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_stream_arrives_event_by_event_and_hanging_up_cancels(
    server: Served,
) -> None:
    url, settings, service = server
    headers = {"Authorization": f"Bearer {USER_KEY}"}
    body = {"prompt": "hi", "max_tokens": 240, "temperature": 1.0, "seed": 1, "stream": True}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        with client.stream("POST", "/generate", json=body) as response:
            assert response.status_code == 200
            first = next(response.iter_lines())
            assert json.loads(first.removeprefix("data: "))["delta"]
        # leaving the block closed the connection mid-answer
        assert service.log.wait_written(1, timeout_s=30)  # the server noticed, and logged it
        health = client.get("/health")
    row = _rows(settings)[-1]
    assert (row["status"], row["stream"], row["model"]) == ("cancelled", True, "custom-random")
    assert health.status_code == 200
