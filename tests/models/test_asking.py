"""One question outside the request path (a shadow's, a gate's): the same answer as a request's."""

from __future__ import annotations

import pytest

from app.backends.protocol import Message, ModelSpec, SamplingParams
from app.banking.intents import IntentSet
from app.models.asking import ask_once
from tests.memory import Memory, MemoryOptions

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("intent: out_of_scope\nIt will rain.", (None, "out_of_scope")),
        ("intent: card_arrival\nYour card is on its way.", ("card_arrival", None)),
    ],
)
async def test_a_hand_off_reads_as_a_hand_off_not_as_no_intent(
    memory: Memory, reply: str, expected: tuple[str | None, str | None]
) -> None:
    intents = IntentSet.load()
    spec = ModelSpec("mem", "memory", MemoryOptions(reply=reply))
    adapter = memory.backends()["memory"].create(spec, intents)
    await adapter.load()
    params = SamplingParams(max_tokens=40, temperature=0.0)
    answer = await ask_once(adapter, (Message("user", "rain?"),), params, intents, "block", 5.0)
    assert (answer.status, answer.intent, answer.handoff) == ("ok", *expected)
    if answer.handoff:
        assert answer.reply == intents.handoffs["out_of_scope"]
