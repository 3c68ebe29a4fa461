"""Tool calling on Gemini through google-genai's function calling, against the fake Gemini
over real HTTP: a round trip plain and streamed, arguments its tool refuses never passed on,
card numbers in calls and results redacted before it sees them."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from app.settings import Settings
from tests.api.openai.tooling import (
    ASK,
    BALANCE,
    FREEZE,
    calls_of,
    round_trip,
    sdk_of,
)
from tests.conftest import ServeFactory
from tests.fake_gemini import REPLY_FUNCTION, REPLY_TEXT, FakeGemini

pytestmark = pytest.mark.anyio


async def test_a_tool_round_trip_on_gemini_plain_and_streamed_through_function_calls(
    serve: ServeFactory, gemini_settings: Callable[..., Settings], fake_gemini: FakeGemini
) -> None:
    fake_gemini.tool_arguments = {"last4": "1234", "reason": "lost"}
    async with serve(gemini_settings(active_model="gemini")) as (app, _, _), sdk_of(app) as sdk:
        asked: dict[str, Any] = {
            "model": "gemini",
            "messages": ASK,
            "tools": [FREEZE, BALANCE],
            "tool_choice": "required",
        }
        plain, (finished, finished_streamed) = await round_trip(sdk, asked, "auto")
    call = calls_of(plain)[0]
    for done in (finished, finished_streamed):
        assert done.choices[0].message.tool_calls is None
        assert (done.choices[0].finish_reason, done.choices[0].message.content) == (
            "stop",
            REPLY_TEXT,
        )
    assert finished.model_extra
    assert finished.model_extra["bankllm"]["intent"] == "card_arrival"
    first, _, answered, _ = [r.body for r in fake_gemini.received[-4:]]  # after the warm-up
    config = first["toolConfig"]["functionCallingConfig"]
    assert (config["mode"], config["allowedFunctionNames"]) == ("ANY", ["freeze_card", "balance"])
    assert "responseMimeType" not in first.get("generationConfig", {})
    model_turn, results = answered["contents"][1:]
    assert model_turn["parts"][0]["functionCall"]["name"] == "freeze_card"
    assert model_turn["parts"][0]["functionCall"]["args"] == json.loads(call.function.arguments)
    assert results["parts"] == [
        {
            "functionResponse": {
                "id": call.id,
                "name": "freeze_card",
                "response": {"result": "frozen"},
            }
        }
    ]
    allowed = answered["toolConfig"]["functionCallingConfig"]["allowedFunctionNames"]
    assert allowed == ["freeze_card", "balance", REPLY_FUNCTION]


async def test_gemini_arguments_its_tool_refuses_are_a_502_never_passed_on(
    serve: ServeFactory, gemini_settings: Callable[..., Settings], fake_gemini: FakeGemini
) -> None:
    fake_gemini.tool_arguments = {"last4": "12345", "reason": "lost"}
    async with serve(gemini_settings(active_model="gemini")) as (app, _, _), sdk_of(app) as sdk:
        with pytest.raises(openai.APIStatusError) as raised:
            await sdk.chat.completions.create(
                model="gemini", messages=ASK, tools=[FREEZE], tool_choice="required"
            )
    assert raised.value.status_code == 502
    assert "'freeze_card' with arguments its parameters refuse" in raised.value.message
    assert "does not match '^[0-9]{4}$' (at last4)" in raised.value.message


async def test_card_numbers_in_tool_calls_and_results_are_redacted_before_gemini_sees_them(
    serve: ServeFactory, gemini_settings: Callable[..., Settings], fake_gemini: FakeGemini
) -> None:
    card, iban = "4111 1111 1111 1111", "GB82 WEST 1234 5698 7654 32"
    turns: list[ChatCompletionMessageParam] = [
        *ASK,
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {
                        "name": "lookup",
                        "arguments": json.dumps({"card": card, "n": 4111111111111111}),
                    },
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": f"card {card} is linked to {iban}"},
    ]
    lookup: ChatCompletionToolParam = {"type": "function", "function": {"name": "lookup"}}
    settings = gemini_settings(active_model="gemini", cloud_pii_policy="redact")
    async with serve(settings) as (app, _, _), sdk_of(app) as sdk:
        await sdk.chat.completions.create(model="gemini", messages=turns, tools=[lookup])
    sent = fake_gemini.received[-1].raw.decode()
    for number in (card, "4111111111111111", iban, "1234 5698"):
        assert number not in sent
    model_turn, results = fake_gemini.received[-1].body["contents"][1:]
    assert model_turn["parts"][0]["functionCall"]["args"] == {"card": "[CARD]", "n": "[CARD]"}
    assert (
        results["parts"][0]["functionResponse"]["response"]["result"]
        == "card [CARD] is linked to [IBAN]"
    )


@pytest.mark.parametrize("parallel", [True, False])
async def test_gemini_calls_several_tools_at_once_only_where_parallel_calls_are_taken(
    serve: ServeFactory,
    gemini_settings: Callable[..., Settings],
    fake_gemini: FakeGemini,
    parallel: bool,
) -> None:
    fake_gemini.tool_arguments, fake_gemini.parallel_calls = {"last4": "1234", "reason": "lost"}, 2
    async with serve(gemini_settings(active_model="gemini")) as (app, _, _), sdk_of(app) as sdk:
        asked = sdk.chat.completions.create(
            model="gemini",
            messages=ASK,
            tools=[FREEZE],
            tool_choice="required",
            parallel_tool_calls=parallel,
        )
        if parallel:
            assert [c.function.name for c in calls_of(await asked)] == ["freeze_card"] * 2
            return
        with pytest.raises(openai.APIStatusError) as raised:
            await asked
    assert raised.value.status_code == 502
    assert "called 2 tools; parallel_tool_calls is false" in raised.value.message
