"""What the tool-calling tests share: two tools, a question, the SDK over the app, and the
calls of an answer, whole or streamed."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import openai
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageParam,
    ChatCompletionToolParam,
)

from tests.helpers import USER_KEY

FREEZE: ChatCompletionToolParam = {
    "type": "function",
    "function": {
        "name": "freeze_card",
        "description": "Freeze one of the customer's cards",
        "parameters": {
            "type": "object",
            "properties": {
                "last4": {"type": "string", "pattern": "^[0-9]{4}$"},
                "reason": {"enum": ["lost", "stolen", "other"]},
            },
            "required": ["last4", "reason"],
            "additionalProperties": False,
        },
    },
}
BALANCE: ChatCompletionToolParam = {
    "type": "function",
    "function": {
        "name": "balance",
        "parameters": {"type": "object", "properties": {}, "additionalProperties": False},
    },
}
ASK: list[ChatCompletionMessageParam] = [{"role": "user", "content": "I lost my card, freeze it"}]


@asynccontextmanager
async def sdk_of(app: Any) -> AsyncIterator[openai.AsyncOpenAI]:
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app)) as http:
        yield openai.AsyncOpenAI(
            base_url="http://testserver/v1", api_key=USER_KEY, max_retries=0, http_client=http
        )


def assert_valid_freeze(arguments: str) -> None:
    args = json.loads(arguments)
    assert set(args) == {"last4", "reason"}, args
    assert re.fullmatch("[0-9]{4}", args["last4"]), args
    assert args["reason"] in {"lost", "stolen", "other"}, args


def calls_of(completion: ChatCompletion) -> list[ChatCompletionMessageFunctionToolCall]:
    """The function calls of an answer (the only kind of call this service makes)."""
    calls = completion.choices[0].message.tool_calls or []
    return [c for c in calls if isinstance(c, ChatCompletionMessageFunctionToolCall)]


async def streamed(sdk: openai.AsyncOpenAI, **asked: Any) -> ChatCompletion:
    """A streamed answer, its chunks joined by the SDK's own stream state."""
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    async for chunk in await sdk.chat.completions.create(**asked, stream=True):
        state.handle_chunk(chunk)
    return ChatCompletion.model_validate(state.current_completion_snapshot.model_dump())


async def round_trip(
    sdk: openai.AsyncOpenAI, asked: dict[str, Any], finishing_choice: str
) -> tuple[ChatCompletion, list[ChatCompletion]]:
    """A tool round trip, plain and streamed: asked with `asked`, the model calls freeze_card
    with valid arguments; the client sends the result, and the model finishes, asked with
    `finishing_choice`. The call's answer, and the finishing answers (plain, streamed)."""
    plain = await sdk.chat.completions.create(**asked)
    again = await streamed(sdk, **asked)
    for called in (plain, again):
        assert called.choices[0].finish_reason == "tool_calls", called
        (call,) = calls_of(called)
        assert call.type == "function"
        assert call.function.name == "freeze_card"
        assert_valid_freeze(call.function.arguments)
    result: list[Any] = [
        *asked["messages"],
        plain.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": calls_of(plain)[0].id, "content": "frozen"},
    ]
    finishing = asked | {"messages": result, "tool_choice": finishing_choice}
    return plain, [
        await sdk.chat.completions.create(**finishing),
        await streamed(sdk, **finishing),
    ]
