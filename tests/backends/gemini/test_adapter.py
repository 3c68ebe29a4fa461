"""GeminiAdapter through the real google-genai SDK, over real HTTP to the fake Gemini server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from app.backends.catalog import unavailable_reason
from app.backends.gemini import options as gemini_options
from app.backends.gemini.adapter import GeminiAdapter
from app.backends.gemini.choice import CHOICE_TOKENS, ChoiceReader, choice_schema
from app.backends.protocol import Completion, Message, Piece, SamplingParams, Usage, collect
from app.banking.intents import IntentSet
from app.errors import (
    UpstreamAuthRejected,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
)
from app.models.registry import build_registry
from app.settings import Settings
from tests.fake_gemini import CHOICE_CHUNKS, REPLY, FakeGemini, Fault, choice_json
from tests.helpers import answer, ask

pytestmark = pytest.mark.anyio
GREEDY = SamplingParams(max_tokens=64, temperature=0.0)
REPLY_TOKENS = CHOICE_CHUNKS  # Google's tokens: the whole JSON object's


@pytest.fixture
async def adapter(open_adapter: Callable[..., Any]) -> AsyncIterator[GeminiAdapter]:
    opened: GeminiAdapter = await open_adapter()
    yield opened
    await opened.close()


def _cost(prompt: int, output: int) -> float:
    return round((prompt * 0.30 + output * 2.50) / 1e6, 8)


async def test_a_whole_answer_is_one_streamed_call(
    adapter: GeminiAdapter, fake_gemini: FakeGemini
) -> None:
    completion = await answer(adapter, "my card has not arrived", GREEDY)
    [request] = fake_gemini.received
    prompt_tokens = completion.usage.prompt_tokens
    assert completion == Completion(
        REPLY, "stop", Usage(prompt_tokens, REPLY_TOKENS, _cost(prompt_tokens, REPLY_TOKENS)), 0.9
    )
    assert len(choice_json().split(" ")) == CHOICE_CHUNKS
    assert prompt_tokens > 0
    assert request.path == "/v1/models/gemini-2.5-flash:streamGenerateContent"
    assert request.body["contents"] == [
        {"parts": [{"text": "my card has not arrived"}], "role": "user"}
    ]
    assert request.body["systemInstruction"]["parts"] == [
        {"text": IntentSet.load().choice_prompt()}
    ]
    assert request.body["generationConfig"] == {
        "maxOutputTokens": 64 + CHOICE_TOKENS,  # the reply's, and the object's own
        "temperature": 0.0,
        "topP": 1.0,
        "responseMimeType": "application/json",
        "responseJsonSchema": choice_schema(IntentSet.load()),
        "thinkingConfig": {"thinking_budget": 0},  # as the SDK writes it; Google takes both
    }
    enum = request.body["generationConfig"]["responseJsonSchema"]["properties"]["intent"]["enum"]
    assert enum == IntentSet.load().answer_labels  # the 77 intents and the hand-off


async def test_a_conversation_keeps_its_turns_and_system_turns_join_the_instruction(
    adapter: GeminiAdapter, fake_gemini: FakeGemini
) -> None:
    conversation = (
        Message("system", "Answer in French."),
        Message("user", "my card"),
        Message("assistant", "Which card?"),
        Message("user", "the new one"),
    )
    assert (await collect(adapter.stream(conversation, GREEDY))).text == REPLY
    [request] = fake_gemini.received
    assert request.body["contents"] == [
        {"parts": [{"text": "my card"}], "role": "user"},
        {"parts": [{"text": "Which card?"}], "role": "model"},
        {"parts": [{"text": "the new one"}], "role": "user"},
    ]
    assert request.body["systemInstruction"]["parts"] == [
        {"text": IntentSet.load().choice_prompt() + "\n\nAnswer in French."}
    ]


async def test_stream_yields_the_reply_then_a_finish_piece(
    adapter: GeminiAdapter, fake_gemini: FakeGemini
) -> None:
    pieces = [piece async for piece in adapter.stream(ask("hello"), GREEDY)]
    assert "".join(p.text for p in pieces) == REPLY
    # the intent line once the choice is made, with its stated confidence, then a piece a
    # chunk of the reply: each of its 13 words
    assert pieces[0] == Piece("intent: card_arrival\n", confidence=0.9)
    assert len(pieces) == 1 + 13 + 1
    usage = pieces[-1].usage
    assert usage is not None
    cost = _cost(usage.prompt_tokens, REPLY_TOKENS)
    assert pieces[-1] == Piece("", "stop", Usage(usage.prompt_tokens, REPLY_TOKENS, cost))
    assert fake_gemini.received[0].path.endswith(":streamGenerateContent")


async def test_max_tokens_and_stop_strings(adapter: GeminiAdapter, fake_gemini: FakeGemini) -> None:
    fake_gemini.reply = "intent: card_arrival\n" + " ".join(["word"] * 40)
    few = SamplingParams(max_tokens=1, temperature=0)  # and the object's own 32: 28 words
    short = await collect(adapter.stream(ask("hello"), few))
    assert (short.text, short.finish_reason) == ("intent: card_arrival\n" + "word " * 28, "length")
    fake_gemini.reset()
    cut = await collect(adapter.stream(ask("hello"), SamplingParams(stop=("way",), temperature=0)))
    assert (cut.text, cut.finish_reason) == ("intent: card_arrival\nYour card is on its ", "stop")
    # cut here, not by Google: in the JSON object, a stop string would cut the object
    assert "stopSequences" not in fake_gemini.received[-1].body["generationConfig"]


async def test_a_hand_off_and_a_stated_confidence_are_the_choice_given(
    adapter: GeminiAdapter, fake_gemini: FakeGemini
) -> None:
    fake_gemini.reply = "intent: out_of_scope\nI can only help with banking."
    fake_gemini.confidence = 0.25
    away = await collect(adapter.stream(ask("weather?"), GREEDY))
    assert (away.text, away.confidence) == (fake_gemini.reply, 0.25)


async def test_a_choice_cut_by_the_token_limit_keeps_its_intent(
    adapter: GeminiAdapter, fake_gemini: FakeGemini
) -> None:
    few = SamplingParams(max_tokens=1, temperature=0)
    # 33 tokens: `{"intent":`, the label, `"confidence":`, `0.9,`, `"reply":` and 28 words
    fake_gemini.reply = "intent: card_arrival\n" + " ".join(["word"] * 100)
    cut = await collect(adapter.stream(ask("hello"), few))
    assert (cut.finish_reason, cut.confidence) == ("length", 0.9)
    assert cut.text.startswith("intent: card_arrival\nword word")


def test_a_reader_refuses_what_is_not_the_choice_object() -> None:
    labels = IntentSet.load().answer_labels
    for text in (
        '{"reply": "hi", "intent": "card_arrival"',
        '{"intent": "weather", "confidence": 1, "reply": "',
        '{"intent": "card_arrival", "confidence": true, "reply": "',
        "[1, 2",
    ):
        with pytest.raises(UpstreamError, match="malformed response: not the JSON object"):
            ChoiceReader("gemini", labels).feed(text)
    reader = ChoiceReader("gemini", labels)
    assert reader.feed('{"intent": "card_arrival", "confidence": 0.5') == (None, "")
    line, reply = reader.end(whole=False)  # cut before its reply: the choice was made
    assert (line, reply) == (Piece("intent: card_arrival\n", confidence=0.5), "")


async def test_an_answer_that_is_not_the_choice_object_is_an_upstream_error(
    adapter: GeminiAdapter, fake_gemini: FakeGemini
) -> None:
    fake_gemini.reply = "intent: card_arrival\nfine"
    fake_gemini.confidence = 7.0  # not a confidence: the schema says 0 to 1
    with pytest.raises(UpstreamError, match="gemini sent a malformed response: not the JSON"):
        await collect(adapter.stream(ask("hello"), GREEDY))


async def test_5xx_are_retried_with_backoff(
    adapter: GeminiAdapter, fake_gemini: FakeGemini
) -> None:
    fake_gemini.faults.extend([Fault(status=503), Fault(status=500)])
    completion = await collect(adapter.stream(ask("hello"), GREEDY))
    assert completion.text == REPLY
    assert len(fake_gemini.received) == 3


async def test_5xx_after_the_last_attempt_is_an_upstream_error(
    adapter: GeminiAdapter, fake_gemini: FakeGemini
) -> None:
    fake_gemini.faults.extend([Fault(status=500)] * 3)
    with pytest.raises(UpstreamError) as caught:
        await collect(adapter.stream(ask("hello"), GREEDY))
    assert type(caught.value) is UpstreamError
    assert caught.value.message == "gemini failed (500 INTERNAL) after 3 attempt(s)"
    assert caught.value.details == {
        "upstream_status": 500,
        "upstream_message": "injected 500",
        "attempts": 3,
    }
    assert len(fake_gemini.received) == 3


async def test_429_waits_the_delay_the_server_asks_for(
    open_adapter: Callable[..., Any], fake_gemini: FakeGemini
) -> None:
    # our own backoff would wait 20 s; the server asks for 50 ms
    adapter = await open_adapter(gemini_retry_initial_s=20.0, gemini_retry_max_s=20.0)
    fake_gemini.faults.append(Fault(status=429, retry_delay="0.05s"))
    async with asyncio.timeout(10):
        completion = await collect(adapter.stream(ask("hello"), GREEDY))
    assert completion.text == REPLY
    assert len(fake_gemini.received) == 2
    await adapter.close()


async def test_429_asking_for_too_long_a_wait_is_passed_on(
    adapter: GeminiAdapter, fake_gemini: FakeGemini
) -> None:
    fake_gemini.faults.append(Fault(status=429, retry_delay="30s"))
    with pytest.raises(UpstreamRateLimited) as caught:
        await collect(adapter.stream(ask("hello"), GREEDY))
    assert (caught.value.status_code, caught.value.headers) == (429, {"Retry-After": "30"})
    assert caught.value.details["retry_after_s"] == 30
    assert len(fake_gemini.received) == 1


async def test_429_on_every_attempt_is_passed_on_after_the_retries(
    adapter: GeminiAdapter, fake_gemini: FakeGemini
) -> None:
    fake_gemini.faults.extend([Fault(status=429)] * 3)
    with pytest.raises(UpstreamRateLimited) as caught:
        await collect(adapter.stream(ask("hello"), GREEDY))
    assert (
        caught.value.message
        == "gemini is rate limiting us (429 RESOURCE_EXHAUSTED) after 3 attempt(s)"
    )
    assert caught.value.headers == {"Retry-After": "1"}
    assert len(fake_gemini.received) == 3


async def test_a_rejected_key_says_so_and_marks_the_model(
    open_adapter: Callable[..., Any], fake_gemini: FakeGemini
) -> None:
    adapter = await open_adapter(gemini_api_key="wrong")
    with pytest.raises(UpstreamAuthRejected) as caught:
        await answer(adapter, "hello", GREEDY)
    assert caught.value.status_code == 502
    assert caught.value.message.startswith("gemini rejected the API key (400 INVALID_ARGUMENT)")
    assert adapter.problem == caught.value.message
    assert len(fake_gemini.received) == 1  # a rejected key is not retried
    await adapter.close()


async def test_a_slow_upstream_times_out(
    open_adapter: Callable[..., Any], fake_gemini: FakeGemini
) -> None:
    adapter = await open_adapter(gemini_timeout_s=0.2, gemini_retry_attempts=2)
    fake_gemini.faults.extend([Fault(delay_s=2.0)] * 2)
    with pytest.raises(UpstreamTimeout) as caught:
        await collect(adapter.stream(ask("hello"), GREEDY))
    assert (caught.value.status_code, caught.value.details) == (504, {"attempts": 2})
    assert len(fake_gemini.received) == 2
    await adapter.close()


async def test_a_malformed_body_is_an_upstream_error(
    adapter: GeminiAdapter, fake_gemini: FakeGemini
) -> None:
    fake_gemini.faults.append(Fault(malformed=True))
    with pytest.raises(UpstreamError, match="gemini sent a malformed response"):
        await answer(adapter, "hello", GREEDY)


async def test_a_stream_cut_midway_raises_after_its_first_pieces(
    adapter: GeminiAdapter, fake_gemini: FakeGemini
) -> None:
    fake_gemini.faults.append(Fault(cut_after=3))
    seen: list[str] = []

    async def read() -> None:
        async for piece in adapter.stream(ask("hello"), GREEDY):
            seen.append(piece.text)

    with pytest.raises(UpstreamError, match="could not be reached or broke off"):
        await read()
    # three chunks are `{"intent": "card_arrival", "confidence":`: no choice yet
    assert seen == []
    fake_gemini.faults.append(Fault(cut_after=7))
    with pytest.raises(UpstreamError, match="could not be reached or broke off"):
        await read()
    assert "".join(seen) == "intent: card_arrival\nYour card "


async def test_a_safety_stop_is_not_a_finished_answer(
    adapter: GeminiAdapter, fake_gemini: FakeGemini
) -> None:
    fake_gemini.faults.append(Fault(finish_reason="SAFETY"))
    with pytest.raises(UpstreamError) as caught:
        await collect(adapter.stream(ask("hello"), GREEDY))
    assert caught.value.details == {"finish_reason": "SAFETY"}
    # a judgement of the prompt: its own status, apart from the model's errors
    assert (caught.value.type, caught.value.outcome) == ("upstream_safety", "refused")


def test_without_a_key_or_the_package_the_model_is_unavailable(
    gemini_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = build_registry(gemini_settings(gemini_api_key=None))["gemini"]
    assert unavailable_reason(spec) == "GEMINI_API_KEY is not set"
    monkeypatch.setattr(gemini_options, "sdk_installed", lambda: False)
    assert unavailable_reason(spec) == (
        "the google-genai package is not installed (pip install '.[gemini]')"
    )
