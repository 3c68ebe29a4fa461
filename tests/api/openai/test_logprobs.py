"""Log-probabilities on /v1 with the real openai SDK: custom and qlora give each token of the
reply (its bytes joining to the reply), its log-probability and the most likely others', plain
and streamed alike; a model that gives none refuses them with a 400 naming `logprobs`."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import openai
import pytest
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionMessageParam,
    ChatCompletionTokenLogprob,
)

from app.api.openai.encode import shaped_logprobs
from app.backends.protocol import TokenLogprob
from app.settings import Settings
from tests.api.openai.tooling import sdk_of
from tests.conftest import ServeFactory

pytestmark = pytest.mark.anyio
ASK: list[ChatCompletionMessageParam] = [{"role": "user", "content": "my card has not arrived"}]


def spelled(tokens: list[ChatCompletionTokenLogprob]) -> str:
    """The tokens' bytes joined, read as the reply is (a byte no character completes: U+FFFD)."""
    return b"".join(bytes(t.bytes or []) for t in tokens).decode(errors="replace")


def tokens_of(answer: ChatCompletion) -> tuple[str, list[ChatCompletionTokenLogprob]]:
    """The reply and its tokens' log-probabilities (both there when asked for)."""
    choice = answer.choices[0]
    assert choice.logprobs is not None
    assert choice.logprobs.content is not None
    assert choice.message.content is not None
    return choice.message.content, choice.logprobs.content


def assert_greedy_tokens(tokens: list[ChatCompletionTokenLogprob], content: str, top: int) -> None:
    """The tokens spell the reply; each is the most likely at its place (greedy decoding);
    its alternatives are the `top` most likely, in order, and every number a log-probability."""
    assert tokens
    assert spelled(tokens) == content
    for t in tokens:
        assert len(t.top_logprobs) == top
        assert t.top_logprobs[0].token == t.token
        assert math.isclose(t.top_logprobs[0].logprob, t.logprob, abs_tol=1e-5)
        values = [a.logprob for a in t.top_logprobs]
        assert values == sorted(values, reverse=True)
        assert all(v <= 0 for v in values)


async def chat_logprobs(
    sdk: openai.AsyncOpenAI, model: str, **more: Any
) -> tuple[ChatCompletion, list[ChatCompletionTokenLogprob]]:
    """The same greedy answer, whole and streamed (its chunks' tokens joined)."""
    asked: dict[str, Any] = more | {
        "model": model,
        "messages": ASK,
        "logprobs": True,
        "top_logprobs": 3,
        "temperature": 0,
        "max_tokens": 24,
    }
    whole = await sdk.chat.completions.create(**asked)
    streamed: list[ChatCompletionTokenLogprob] = []
    async for chunk in await sdk.chat.completions.create(**asked, stream=True):
        if chunk.choices and chunk.choices[0].logprobs and chunk.choices[0].logprobs.content:
            streamed += chunk.choices[0].logprobs.content
    return whole, streamed


async def test_custom_gives_each_reply_token_with_its_alternatives_plain_and_streamed(
    serve: ServeFactory,
) -> None:
    async with serve(active_model="custom") as (app, _, _), sdk_of(app) as sdk:
        whole, streamed = await chat_logprobs(sdk, "custom")
        text = await sdk.completions.create(
            model="custom", prompt="I lost my card", logprobs=2, temperature=0, max_tokens=16
        )
    content, tokens = tokens_of(whole)
    assert_greedy_tokens(tokens, content, top=3)
    assert streamed == tokens
    given = text.choices[0].logprobs
    assert given is not None
    assert given.tokens is not None
    assert given.top_logprobs is not None
    assert "".join(given.tokens) == text.choices[0].text
    offsets = [sum(len(t) for t in given.tokens[:i]) for i in range(len(given.tokens))]
    assert given.text_offset == offsets
    assert all(len(others) == 2 for others in given.top_logprobs)


@pytest.mark.parametrize("engine", ["transformers", "vllm"])
async def test_both_qlora_engines_give_the_model_s_own_log_probabilities(
    serve: ServeFactory, qlora_settings: Callable[..., Settings], engine: str
) -> None:
    if engine == "vllm":
        pytest.importorskip("vllm", reason="CPU vLLM: `make install-test` installs it (CI does)")
    settings = qlora_settings(active_model="qlora", qlora_engine=engine)
    async with serve(settings) as (app, _, _), sdk_of(app) as sdk:
        whole, streamed = await chat_logprobs(sdk, "qlora")
        sampled = await sdk.chat.completions.create(
            model="qlora", messages=ASK, logprobs=True, temperature=1.5, seed=3, max_tokens=24
        )
        held = await sdk.chat.completions.create(  # held to a grammar that forces its tokens
            model="qlora",
            messages=ASK,
            logprobs=True,
            top_logprobs=5,
            response_format={"type": "json_object"},
            max_tokens=24,
        )
    content, tokens = tokens_of(whole)
    assert_greedy_tokens(tokens, content, top=3)
    assert streamed == tokens
    # sampled hot, a token need not be the likeliest; its number is still the model's own
    content, tokens = tokens_of(sampled)
    assert spelled(tokens) == content
    assert all(t.top_logprobs == [] for t in tokens)
    assert all(t.logprob <= 0 for t in tokens)
    _, forced = tokens_of(held)
    numbers = [t.logprob for t in forced] + [a.logprob for t in forced for a in t.top_logprobs]
    assert all(math.isfinite(n) for n in numbers)


async def test_a_stop_string_leaves_the_same_tokens_out_streamed_and_whole(
    serve: ServeFactory,
) -> None:
    async with serve(active_model="custom") as (app, _, _), sdk_of(app) as sdk:
        greedy, _ = await chat_logprobs(sdk, "custom")
        content, _ = tokens_of(greedy)
        stop = content[len(content) // 2 :][:3]  # text the reply holds, so it is cut there
        whole, streamed = await chat_logprobs(sdk, "custom", stop=[stop])
    cut, tokens = tokens_of(whole)
    assert cut == content[: content.index(stop)]
    assert streamed == tokens
    assert spelled(tokens) == cut


def test_completions_offsets_count_characters_a_part_of_one_not() -> None:
    parts = [b"caf", b"\xc3", b"\xa9", b" ok"]
    entries = tuple(TokenLogprob(p.decode(errors="replace"), p, -0.5) for p in parts)
    shaped = shaped_logprobs("completions", entries)
    assert shaped["text_offset"] == [0, 3, 3, 4]
    assert shaped_logprobs("completions", entries[3:], b"caf\xc3\xa9")["text_offset"] == [4]


@pytest.mark.parametrize(
    ("fields", "status", "param"),
    [
        ({"top_logprobs": 2}, 400, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, 400, "top_logprobs"),
        ({"logprobs": True}, 400, "logprobs"),  # echo, a fixed reply, gives none
        ({"logprobs": True, "top_logprobs": -1}, 400, "top_logprobs"),
    ],
)
async def test_log_probabilities_a_model_cannot_give_are_a_400(
    serve: ServeFactory, fields: dict[str, Any], status: int, param: str
) -> None:
    async with serve(active_model="echo") as (_, client, _):
        refused = await client.post("/v1/chat/completions", json={"messages": ASK} | fields)
    assert refused.status_code == status, refused.text
    assert refused.json()["error"]["param"] == param, refused.json()


async def test_gemini_refuses_logprobs_naming_them(
    serve: ServeFactory, gemini_settings: Callable[..., Settings]
) -> None:
    async with serve(gemini_settings(active_model="gemini")) as (_, client, _):
        refused = await client.post("/v1/completions", json={"prompt": "my card", "logprobs": 0})
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "logprobs"
    assert (
        "model 'gemini' (gemini) gives no log probabilities" in refused.json()["error"]["message"]
    )
