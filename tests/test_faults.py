"""Faults in our own parts, through the app: the request they hit ends with an error (a 500,
or an error event), it is logged, and the next request is served."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import torch

from app.backends.custom.gpt.model import GPT
from tests.conftest import ServeFactory
from tests.helpers import error_body, parse_sse, read_log

pytestmark = pytest.mark.anyio


class DecodeFault:
    """Armed with `after`, the custom models' decoding step after that many more raises once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._left: int | None = None

    def arm(self, after: int) -> None:
        with self._lock:
            self._left = after

    def strikes(self) -> bool:
        with self._lock:
            if self._left is None:
                return False
            self._left -= 1
            if self._left >= 0:
                return False
            self._left = None
            return True


@pytest.fixture
def decode_fault(monkeypatch: pytest.MonkeyPatch) -> DecodeFault:
    fault = DecodeFault()
    forward = GPT.forward

    def faulty(self: GPT, idx: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if idx.shape[1] == 1 and fault.strikes():  # a decoding step, not a prefill
            raise RuntimeError("injected decoding fault")
        return forward(self, idx, *args, **kwargs)

    monkeypatch.setattr(GPT, "forward", faulty)
    return fault


async def test_a_decoding_thread_that_raises_fails_its_requests_and_the_next_is_served(
    serve: ServeFactory, decode_fault: DecodeFault
) -> None:
    ask = {"prompt": "my card has not arrived", "max_tokens": 40, "temperature": 0}
    async with serve(active_model="custom-random") as (_, client, service):
        decode_fault.arm(after=0)
        plain = await client.post("/generate", json=ask)
        decode_fault.arm(after=20)  # past the intent line: the stream has begun
        streamed = await client.post("/generate", json=ask | {"stream": True})
        after = await client.post("/generate", json=ask)
        rows = read_log(service.settings, service)
    assert (plain.status_code, plain.json()) == (
        500,
        error_body("internal_error", "internal error"),
    )
    events = parse_sse(streamed.text)
    assert (streamed.status_code, events[-2:]) == (
        200,
        [error_body("internal_error", "internal error"), "[DONE]"],
    )
    assert (after.status_code, after.json()["finish_reason"]) == (200, "length")
    assert [(r["status"], r["error_type"]) for r in rows] == [
        ("upstream_error", "internal_error"),
        ("upstream_error", "internal_error"),
        ("ok", None),
    ]
