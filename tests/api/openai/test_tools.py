"""Tool calling on /v1 with the real openai SDK: a round trip (the model calls, the client runs
the tool and answers, the model finishes) on qlora's two engines, plain and streamed; under
`auto` a valid call or prose; custom refuses a call it must make and says when it was not
offered the tools."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import openai
import pytest

from app.settings import Settings
from tests.api.openai.tooling import (
    ASK,
    BALANCE,
    FREEZE,
    assert_valid_freeze,
    calls_of,
    round_trip,
    sdk_of,
)
from tests.conftest import ServeFactory

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("engine", ["transformers", "vllm"])
async def test_a_tool_round_trip_on_both_qlora_engines_plain_and_streamed(
    serve: ServeFactory, qlora_settings: Callable[..., Settings], engine: str
) -> None:
    if engine == "vllm":
        pytest.importorskip("vllm", reason="CPU vLLM: `make install-test` installs it (CI does)")
    settings = qlora_settings(active_model="qlora", qlora_engine=engine, qlora_max_model_len=1024)
    async with serve(settings) as (app, _, _), sdk_of(app) as sdk:
        asked: dict[str, Any] = {
            "model": "qlora",
            "messages": ASK,
            "tools": [FREEZE, BALANCE],
            "tool_choice": {"type": "function", "function": {"name": "freeze_card"}},
            "max_tokens": 120,
            "temperature": 1.0,
            "seed": 7,
        }
        plain, finished = await round_trip(sdk, asked, "none")
    assert plain.model_extra
    assert plain.model_extra["bankllm"]["tools"] == "offered"
    for done in finished:
        assert done.choices[0].message.tool_calls is None
        assert done.choices[0].finish_reason in {"stop", "length"}
        assert done.choices[0].message.content


@pytest.mark.parametrize("engine", ["transformers", "vllm"])
async def test_auto_answers_with_a_valid_call_or_prose_on_both_qlora_engines(
    serve: ServeFactory, qlora_settings: Callable[..., Settings], engine: str
) -> None:
    if engine == "vllm":
        pytest.importorskip("vllm", reason="CPU vLLM: `make install-test` installs it (CI does)")
    settings = qlora_settings(active_model="qlora", qlora_engine=engine, qlora_max_model_len=1024)
    async with serve(settings) as (app, _, _), sdk_of(app) as sdk:
        answers = [
            await sdk.chat.completions.create(
                model="qlora", messages=ASK, tools=[FREEZE], max_tokens=120, temperature=1.5, seed=s
            )
            for s in range(6)
        ]
    for answer in answers:
        message = answer.choices[0].message
        if message.tool_calls:
            assert answer.choices[0].finish_reason == "tool_calls"
            assert_valid_freeze(calls_of(answer)[0].function.arguments)
        else:
            assert message.content
            assert not message.content.startswith("{")


@pytest.mark.parametrize(
    "choice", ["required", {"type": "function", "function": {"name": "freeze_card"}}]
)
async def test_custom_refuses_a_call_it_must_make_with_a_400_naming_tool_choice(
    serve: ServeFactory, choice: Any
) -> None:
    async with serve(active_model="custom") as (app, _, _), sdk_of(app) as sdk:
        with pytest.raises(openai.BadRequestError) as raised:
            await sdk.chat.completions.create(
                model="custom", messages=ASK, tools=[FREEZE], tool_choice=choice
            )
    assert raised.value.param == "tool_choice"
    assert "model 'custom' (custom) cannot call tools" in raised.value.message


async def test_custom_answers_auto_in_prose_and_says_it_was_not_offered_the_tools(
    serve: ServeFactory,
) -> None:
    async with serve(active_model="custom") as (app, _, _), sdk_of(app) as sdk:
        offered = await sdk.chat.completions.create(
            model="custom", messages=ASK, tools=[FREEZE], temperature=0
        )
        plain = await sdk.chat.completions.create(model="custom", messages=ASK, temperature=0)
    assert offered.choices[0].message.content == plain.choices[0].message.content
    assert offered.choices[0].message.tool_calls is None
    assert offered.model_extra
    assert offered.model_extra["bankllm"]["tools"] == "not_offered"
    assert plain.model_extra
    assert plain.model_extra["bankllm"]["tools"] is None
