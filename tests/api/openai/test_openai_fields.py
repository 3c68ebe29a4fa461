"""Every field of OpenAI's requests is served, taken at a value that changes nothing, or
refused with 400 naming it: never silently ignored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.conftest import ServeFactory
from tests.helpers import USER_KEY

pytestmark = pytest.mark.anyio
QUESTION: list[ChatCompletionMessageParam] = [{"role": "user", "content": "where is my card"}]
NOT_SERVED = "not served: only"


@asynccontextmanager
async def _sdk(serve: ServeFactory) -> AsyncIterator[openai.AsyncOpenAI]:
    """The openai SDK talking to an app serving the echo model."""
    async with (
        serve(active_model="echo") as (app, _, _service),
        httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app)) as http,
    ):
        yield openai.AsyncOpenAI(
            base_url="http://testserver/v1", api_key=USER_KEY, max_retries=0, http_client=http
        )


@pytest.mark.parametrize(
    ("endpoint", "field", "value", "says"),
    [
        ("chat", "frequency_penalty", 0.5, NOT_SERVED),
        ("chat", "presence_penalty", -1.0, NOT_SERVED),
        ("chat", "logit_bias", {"50256": -100.0}, NOT_SERVED),
        ("chat", "store", True, NOT_SERVED),
        ("chat", "service_tier", "priority", NOT_SERVED),
        ("chat", "modalities", ["text", "audio"], NOT_SERVED),
        ("chat", "ignore_eos", True, NOT_SERVED),
        ("chat", "reasoning_effort", "high", "not a field of this API"),
        ("chat", "guided_json", {"type": "object"}, "not a field of this API"),
        ("completions", "best_of", 3, NOT_SERVED),
        ("completions", "echo", True, NOT_SERVED),
        ("completions", "suffix", " thanks", NOT_SERVED),
        ("completions", "frequency_penalty", 1.0, NOT_SERVED),
        ("completions", "top_k", 5, "not a field of this API"),
    ],
)
async def test_a_field_not_served_is_a_400_that_names_it(
    serve: ServeFactory, endpoint: str, field: str, value: Any, says: str
) -> None:
    async with _sdk(serve) as sdk:
        if endpoint == "chat":
            asked = sdk.chat.completions.create(
                model="echo", messages=QUESTION, extra_body={field: value}
            )
        else:
            asked = sdk.completions.create(  # type: ignore[assignment]
                model="echo", prompt="where is my card", extra_body={field: value}
            )
        with pytest.raises(openai.BadRequestError) as raised:
            await asked
    error = raised.value.response.json()["error"]
    assert raised.value.status_code == 400
    assert error["param"] == field
    assert error["message"].startswith(f"{field}: ")
    assert says in error["message"]


async def test_fields_that_change_nothing_are_taken(serve: ServeFactory) -> None:
    """What SDKs and clients send at their neutral values, and an assistant turn passed back
    as the SDK returned it, are answered."""
    neutral = {
        "frequency_penalty": 0,
        "presence_penalty": 0.0,
        "logit_bias": {},
        "store": False,
        "service_tier": "auto",
        "modalities": ["text"],
        "metadata": {"ticket": "42"},
        "tool_choice": "none",
        "parallel_tool_calls": True,
        "prompt_cache_key": "session-1",
        "safety_identifier": "user-hash",
        "stream_options": None,
        "ignore_eos": False,
    }
    async with _sdk(serve) as sdk:
        first = await sdk.chat.completions.create(model="echo", messages=QUESTION)
        # as the SDK returned it: refusal, tool_calls, audio... all null
        returned: Any = first.choices[0].message.model_dump()
        follow_up: list[Any] = [
            *QUESTION,
            returned,
            {"role": "user", "content": "and when will it come", "name": "ana"},
        ]
        answer = await sdk.chat.completions.create(
            model="echo", messages=follow_up, extra_body=neutral
        )
        text = await sdk.completions.create(
            model="echo", prompt="where is my card", best_of=1, echo=False, suffix=""
        )
    assert answer.choices[0].message.content
    assert text.choices[0].text
