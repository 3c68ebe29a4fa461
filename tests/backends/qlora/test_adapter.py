"""QLoRAAdapter on the transformers engine: a tiny Llama with a peft LoRA, 4-bit and not."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from app.backends.catalog import unavailable_reason
from app.backends.protocol import ModelSpec, SamplingParams, collect
from app.backends.qlora.adapter import QLoRAAdapter, context_length
from app.backends.qlora.finetune import FinetuneConfig, finetune
from app.backends.qlora.hf_loading import load_base
from app.backends.qlora.options import QLoRAOptions
from app.banking.corpus import build_corpus
from app.banking.intents import IntentSet
from app.errors import InvalidRequest, ModelUnavailable
from app.models.registry import build_registry
from app.settings import Settings
from tests.helpers import ask

pytestmark = pytest.mark.anyio
GREEDY = SamplingParams(max_tokens=12, temperature=0.0)


@pytest.fixture
async def adapter(qlora_settings: Callable[..., Settings]) -> AsyncIterator[QLoRAAdapter]:
    loaded = QLoRAAdapter(build_registry(qlora_settings())["qlora"], IntentSet.load())
    await loaded.load()
    yield loaded
    await loaded.close()


def test_the_base_loads_in_4bit_nf4(tiny_llama: tuple[Path, Path]) -> None:
    model = load_base(str(tiny_llama[0]), "bitsandbytes")
    layers = [m for m in model.modules() if type(m).__name__ == "Linear4bit"]
    assert len(layers) == 2 * 7  # q, k, v, o, gate, up, down in each of 2 layers
    assert {cast(Any, m.weight).quant_type for m in layers} == {"nf4"}


async def test_4bit_generation_streams_to_its_max_tokens(
    qlora_settings: Callable[..., Settings],
) -> None:
    spec = build_registry(qlora_settings(qlora_quantization="bitsandbytes"))["qlora"]
    adapter = QLoRAAdapter(spec, IntentSet.load())
    await adapter.load()
    pieces = [p async for p in adapter.stream(ask("my card has not arrived"), GREEDY)]
    await adapter.close()
    final = pieces[-1]
    assert final.finish_reason in ("stop", "length")
    assert final.usage is not None
    assert 1 <= final.usage.completion_tokens <= GREEDY.max_tokens
    assert final.usage.prompt_tokens > 10  # the chat template and the system prompt


async def test_concurrent_requests_batch_to_the_same_greedy_tokens(adapter: QLoRAAdapter) -> None:
    prompts = ["my card has not arrived", "I lost my card", "how do I top up", "hi"]
    alone = [await collect(adapter.stream(ask(p), GREEDY)) for p in prompts]
    together = await asyncio.gather(*(collect(adapter.stream(ask(p), GREEDY)) for p in prompts))
    assert together == alone


async def test_stop_strings_and_max_tokens(adapter: QLoRAAdapter) -> None:
    full = await collect(adapter.stream(ask("hello"), SamplingParams(max_tokens=12, temperature=0)))
    assert (full.finish_reason, full.usage.completion_tokens) == ("length", 12)
    reply = full.text.partition("\n")[2]  # stop strings cut the reply, never the intent line
    stop = reply[len(reply) // 2 :][:3]
    cut = await collect(
        adapter.stream(ask("hello"), SamplingParams(max_tokens=12, temperature=0, stop=(stop,)))
    )
    assert cut.finish_reason == "stop"
    assert stop not in cut.text.partition("\n")[2]
    assert full.text.startswith(cut.text)


async def test_a_closed_stream_stops_its_row_and_the_engine_goes_on(adapter: QLoRAAdapter) -> None:
    long = SamplingParams(max_tokens=200, temperature=0)
    stream = adapter.stream(ask("hello"), long)
    await anext(stream)
    await stream.aclose()
    after = await collect(adapter.stream(ask("hello"), GREEDY))
    assert after.usage.completion_tokens == GREEDY.max_tokens


async def test_a_prompt_longer_than_the_model_is_422(adapter: QLoRAAdapter) -> None:
    with pytest.raises(InvalidRequest, match="the model takes fewer than 512"):
        await collect(adapter.stream(ask("card " * 600), GREEDY))


def test_unavailable_reasons(qlora_settings: Callable[..., Settings], tmp_path: Path) -> None:
    def reason(**overrides: str) -> str | None:
        return unavailable_reason(build_registry(qlora_settings(**overrides))["qlora"])

    assert reason() is None
    assert reason(qlora_base_model="") == "QLORA_BASE_MODEL is not set"
    assert reason(qlora_adapter="") == "QLORA_ADAPTER is not set"
    assert reason(qlora_adapter=str(tmp_path)) == (
        f"no LoRA adapter at {tmp_path}; make one with `bankllm finetune`"
    )


async def test_finetune_writes_an_adapter_that_serves(
    tiny_llama: tuple[Path, Path], tmp_path: Path
) -> None:
    examples = [
        e for e in build_corpus(variants=1) if e.category in ("card_arrival", "lost_or_stolen_card")
    ]
    config = FinetuneConfig(rank=4, alpha=8, max_steps=3, batch_size=4, eval_limit=4)
    report = finetune(
        str(tiny_llama[0]), examples, IntentSet.load(), tmp_path / "ft", config, log=lambda _: None
    )
    meta = json.loads((tmp_path / "ft" / "bankllm.json").read_text())
    assert (report.steps, meta["steps"], meta["config"]["rank"]) == (3, 3, 4)
    assert meta["val_accuracy"] == report.val_accuracy
    assert report.val_accuracy is not None
    assert 0.0 <= report.val_accuracy <= 1.0
    options = QLoRAOptions(
        base_model=str(tiny_llama[0]),
        adapter=str(tmp_path / "ft"),
        engine="transformers",
        quantization="bitsandbytes",
        max_model_len=512,
    )
    spec = ModelSpec("qlora", "qlora", options)
    adapter = QLoRAAdapter(spec, IntentSet.load())
    assert adapter.info.version == meta["version"]
    await adapter.load()
    completion = await collect(adapter.stream(ask("where is my card"), GREEDY))
    await adapter.close()
    assert 1 <= completion.usage.completion_tokens <= GREEDY.max_tokens


@pytest.mark.parametrize(
    ("configured", "native", "expected"),
    [(None, 512, 512), (256, 512, 256), (512, 512, 512), (300, None, 300)],
)
def test_the_context_is_ours_or_the_model_s_own(
    configured: int | None, native: int | None, expected: int
) -> None:
    config = SimpleNamespace(max_position_embeddings=native)
    assert context_length(QLoRAOptions(max_model_len=configured), config) == expected


async def test_a_context_longer_than_the_model_s_own_is_a_clear_start_up_error(
    qlora_settings: Callable[..., Settings],
) -> None:
    adapter = QLoRAAdapter(
        build_registry(qlora_settings(qlora_max_model_len=4096))["qlora"], IntentSet.load()
    )
    with pytest.raises(ModelUnavailable) as refused:
        await adapter.load()
    await adapter.close()
    assert refused.value.message == (
        "QLORA_MAX_MODEL_LEN=4096 is more than the model's own context, 1024 tokens "
        "(max_position_embeddings): set it to 1024 or less, or unset it"
    )
