from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.backends.catalog import load_adapter, unavailable_reason
from app.backends.custom.gpt.checkpoint import read_config
from app.backends.custom.options import CustomOptions
from app.backends.custom.token_queue import TokenQueue
from app.backends.protocol import Adapter, Completion, ModelSpec, Piece, SamplingParams, Usage
from app.banking.intents import IntentSet
from app.errors import InvalidRequest, ModelUnavailable
from tests.helpers import answer, ask

pytestmark = pytest.mark.anyio
GREEDY = SamplingParams(max_tokens=40, temperature=0.0)


@pytest.fixture
async def adapter(checkpoints: dict[str, Path]) -> AsyncIterator[Adapter]:
    loaded = await load_adapter(
        ModelSpec("custom", "custom", CustomOptions(checkpoint=checkpoints["a"])),
        IntentSet.load(),
    )
    yield loaded
    await loaded.close()


async def _pieces(adapter: Adapter, prompt: str, params: SamplingParams) -> list[Piece]:
    return [p async for p in adapter.stream(ask(prompt), params)]


async def test_stream_joins_to_generate_and_ends_with_usage(
    adapter: Adapter, checkpoints: dict[str, Path]
) -> None:
    pieces = await _pieces(adapter, "my card has not arrived", GREEDY)
    completion = await answer(adapter, "my card has not arrived", GREEDY)
    assert adapter.info.version == read_config(checkpoints["a"])["version"]
    assert "".join(p.text for p in pieces) == completion.text
    assert pieces[-1] == Piece("", completion.finish_reason, completion.usage)
    assert all(p.finish_reason is None for p in pieces[:-1])
    assert completion.usage.prompt_tokens > 2
    assert 1 <= completion.usage.completion_tokens <= 40


async def test_max_tokens_cuts_with_length(adapter: Adapter) -> None:
    completion = await answer(adapter, "my card", SamplingParams(max_tokens=1, temperature=0))
    assert completion.finish_reason == "length"
    assert completion.usage.completion_tokens == 1


async def test_stop_string_cuts_the_text(adapter: Adapter) -> None:
    full = await answer(adapter, "my card has not arrived", GREEDY)
    intent_line, _, reply = full.text.partition("\n")
    cut_at = reply[3:6]
    stopped = await answer(
        adapter,
        "my card has not arrived",
        SamplingParams(max_tokens=40, temperature=0, stop=(cut_at,)),
    )
    assert stopped == Completion(
        f"{intent_line}\n{reply[: reply.index(cut_at)]}",
        "stop",
        Usage(full.usage.prompt_tokens, stopped.usage.completion_tokens),
        full.confidence,
    )
    assert stopped.usage.completion_tokens < full.usage.completion_tokens


async def test_seeded_sampling_repeats(adapter: Adapter) -> None:
    params = SamplingParams(max_tokens=30, temperature=1.0, top_p=0.9, seed=11)
    assert await answer(adapter, "hello", params) == await answer(adapter, "hello", params)


async def test_a_prompt_longer_than_the_context_is_refused(adapter: Adapter) -> None:
    with pytest.raises(InvalidRequest, match=r"reads at most 127"):
        await answer(adapter, "card " * 400, GREEDY)


async def test_a_missing_checkpoint_is_unavailable_with_its_reason(tmp_path: Path) -> None:
    spec = ModelSpec("lost", "custom", CustomOptions(checkpoint=tmp_path))
    assert unavailable_reason(spec) == (
        f"no checkpoint at {tmp_path}; train one with `bankllm train --out {tmp_path}`"
    )
    with pytest.raises(ModelUnavailable, match="model 'lost' is unavailable: no checkpoint"):
        await load_adapter(spec, IntentSet.load())


async def test_concurrent_requests_get_what_they_would_get_alone(adapter: Adapter) -> None:
    prompts = [f"my card question number {i}" for i in range(8)]
    params = [
        SamplingParams(max_tokens=20 + i, temperature=0.8 * (i % 2), seed=i) for i in range(8)
    ]
    alone = [await answer(adapter, p, s) for p, s in zip(prompts, params, strict=True)]
    together = await asyncio.gather(
        *(answer(adapter, p, s) for p, s in zip(prompts, params, strict=True))
    )
    assert list(together) == alone


async def test_a_burst_of_tokens_from_the_decoding_thread_wakes_the_loop_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = asyncio.get_running_loop()
    wakes: list[object] = []
    call_soon_threadsafe = loop.call_soon_threadsafe

    def counted(callback: Any, *args: Any, **kwargs: Any) -> asyncio.Handle:
        wakes.append(callback)
        return call_soon_threadsafe(callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_soon_threadsafe", counted)
    queues = [TokenQueue() for _ in range(3)]
    emitters = [q.emitter() for q in queues]

    def one_step() -> None:  # a decoding step: a token for each row, then one row ends
        for token, emit in enumerate(emitters):
            emit(token)
        emitters[0](None)

    for _ in range(2):
        thread = threading.Thread(target=one_step)
        thread.start()
        thread.join()  # the loop is held meanwhile: the whole step waits for it
        await asyncio.sleep(0)
    got = [[q._queue.get_nowait() for _ in range(q._queue.qsize())] for q in queues]
    assert got == [[0, None, 0, None], [1, 1], [2, 2]]  # each queue's own order
    assert len(wakes) == 2  # one wake-up a step, not one a token


async def test_the_intent_is_decided_and_only_the_reply_is_sampled(adapter: Adapter) -> None:
    greedy = await _pieces(adapter, "my card has not arrived", GREEDY)
    intent_line = "".join(p.text for p in greedy).split("\n", 1)[0]
    confidence = greedy[0].confidence
    assert intent_line.removeprefix("intent: ") in IntentSet.load().answer_labels
    assert confidence is not None
    assert 0.0 < confidence <= 1.0
    for seed in range(6):
        for temperature in (1.0, 2.0):
            params = SamplingParams(max_tokens=40, temperature=temperature, seed=seed)
            sampled = await _pieces(adapter, "my card has not arrived", params)
            assert "".join(p.text for p in sampled).split("\n", 1)[0] == intent_line
            assert sampled[0].confidence == confidence


async def test_max_tokens_counts_the_reply_alone(adapter: Adapter) -> None:
    for max_tokens in (1, 3):
        params = SamplingParams(max_tokens=max_tokens, temperature=0)
        completion = await answer(adapter, "I lost my card", params)
        intent_line, _, reply = completion.text.partition("\n")
        assert intent_line.startswith("intent: ")
        assert completion.usage.completion_tokens == max_tokens
        assert reply  # the caller's tokens went to the reply, not to the intent line


async def test_stop_strings_apply_to_the_reply_never_to_the_decided_intent_line(
    adapter: Adapter,
) -> None:
    whole = await answer(adapter, "I lost my card", GREEDY)
    intent_line, _, reply = whole.text.partition("\n")
    label = intent_line.removeprefix("intent: ")
    for stop in ("\n", label[:4], "intent"):
        params = SamplingParams(max_tokens=40, temperature=0, stop=(stop,))
        stopped = await answer(adapter, "I lost my card", params)
        assert stopped.text.startswith(f"{intent_line}\n"), stop
        assert stopped.text == f"{intent_line}\n{reply.split(stop)[0]}", stop
