from __future__ import annotations

import pytest

from app.backends.echo import REPLY, EchoAdapter, EchoOptions
from app.backends.protocol import Completion, ModelSpec, SamplingParams, Usage
from tests.helpers import answer

pytestmark = pytest.mark.anyio


async def test_echo_answers_its_fixed_reply() -> None:
    echo = EchoAdapter(ModelSpec("echo", "echo", EchoOptions()))
    assert await answer(echo, "two words", SamplingParams()) == Completion(
        REPLY, "stop", Usage(2, 15)
    )


async def test_echo_respects_max_tokens_and_stop() -> None:
    echo = EchoAdapter(ModelSpec("echo", "echo", EchoOptions()))
    assert await answer(echo, "x", SamplingParams(max_tokens=3)) == Completion(
        "intent: card_arrival\nThis ", "length", Usage(1, 3)
    )
    assert await answer(echo, "x", SamplingParams(stop=("model",))) == Completion(
        "intent: card_arrival\nThis is the echo ", "stop", Usage(1, 7)
    )
