"""The qlora model's intent is decided from its label set, never sampled; a fine-tune learns the
hand-off; the adapter's calibrated threshold hands off what it doubts."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from app.backends.protocol import SamplingParams, collect
from app.backends.qlora.adapter import QLoRAAdapter
from app.backends.qlora.finetune import FinetuneConfig, encode, finetune
from app.backends.qlora.prompting import META_FILE, intent_prefix_ids, label_ids
from app.banking.corpus import Example
from app.banking.followups import FollowUpConversation
from app.banking.intents import IntentSet
from app.banking.out_of_scope import out_of_scope_examples
from app.errors import ModelUnavailable
from app.models.registry import build_registry
from app.settings import Settings
from tests.conftest import ServeFactory
from tests.helpers import ask, sample
from tests.tiny_llama import build_tokenizer

pytestmark = pytest.mark.anyio


async def test_the_intent_line_is_the_same_at_any_temperature_and_costs_no_tokens(
    qlora_settings: Callable[..., Settings],
) -> None:
    adapter = QLoRAAdapter(build_registry(qlora_settings())["qlora"], IntentSet.load())
    await adapter.load()
    try:
        greedy = [p async for p in adapter.stream(ask("where is my card"), SamplingParams())]
        hot = [
            [
                p
                async for p in adapter.stream(
                    ask("where is my card"), SamplingParams(temperature=1.0, seed=seed)
                )
            ]
            for seed in range(4)
        ]
        one = await collect(adapter.stream(ask("where is my card"), SamplingParams(max_tokens=1)))
    finally:
        await adapter.close()
    line = greedy[0]
    assert line.text.startswith("intent: ")
    assert line.text.endswith("\n")
    assert line.text.removeprefix("intent: ").strip() in IntentSet.load().answer_labels
    assert line.confidence is not None
    assert 0.0 < line.confidence <= 1.0
    assert all(pieces[0] == line for pieces in hot)  # the label and its confidence: decided
    assert one.usage.completion_tokens == 1  # the reply's token alone
    assert one.text.startswith(line.text)


def test_a_fine_tune_answer_is_the_pieces_serving_scores() -> None:
    tokenizer = build_tokenizer()
    intents = IntentSet.load()
    example = Example("what is the weather", "out_of_scope", earlier=("hi",))
    ids, targets = encode(tokenizer, example, intents)
    answer = [t for t in targets if t != -100]
    start = [*intent_prefix_ids(tokenizer), *label_ids(tokenizer, "out_of_scope")]
    assert answer[: len(start)] == start
    reply = tokenizer.decode(answer[len(start) : -1])
    assert reply == intents.handoffs["out_of_scope"]
    assert answer[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids[: len(ids) - len(answer)]).count("hi") == 1  # the earlier turn


async def test_a_fine_tune_on_the_hand_off_hands_off_and_its_threshold_applies(
    tmp_path: Path,
    tiny_llama: tuple[Path, Path],
    serve: ServeFactory,
    qlora_settings: Callable[..., Settings],
) -> None:
    examples = out_of_scope_examples("train")[:64]
    # every projection and a high rate: a random tiny base learns the one answer in 40 steps
    mlp = ("gate_proj", "up_proj", "down_proj")
    config = FinetuneConfig(
        rank=8,
        alpha=16,
        targets=(*FinetuneConfig().targets, *mlp),
        lr=1e-2,
        max_steps=40,
        batch_size=8,
        eval_limit=0,
        quantization="none",
    )
    conversations = [FollowUpConversation(("hello", "tell me a joke"), ("out_of_scope",) * 2)]
    folder = tmp_path / "away"
    finetune(
        str(tiny_llama[0]),
        examples,
        IntentSet.load(),
        folder,
        config,
        log=lambda _: None,
        conversations=conversations,
    )
    handoffs = IntentSet.load().handoffs
    settings = qlora_settings(active_model="qlora", qlora_adapter=str(folder))
    async with serve(settings) as (_, _, service):
        away = await service.pipeline.generate("will it rain tomorrow", max_tokens=8)
        counted = sample(
            service, "bankllm_handoffs_total", model="qlora", backend="qlora", reason="out_of_scope"
        )
    assert (away.text, away.intent, away.handoff) == (
        handoffs["out_of_scope"],
        None,
        "out_of_scope",
    )
    assert away.confidence is not None
    assert counted == 1
    # an adapter that names an intent, less sure of it than its threshold asks
    doubting = tmp_path / "doubting"
    shutil.copytree(tiny_llama[1], doubting)
    meta = json.loads((doubting / META_FILE).read_text()) if (doubting / META_FILE).exists() else {}
    (doubting / META_FILE).write_text(json.dumps(meta | {"handoff_below": 0.5}))
    async with serve(qlora_settings(active_model="qlora", qlora_adapter=str(doubting))) as started:
        doubted = await started.service.pipeline.generate("where is my card", max_tokens=8)
    assert (doubted.text, doubted.handoff) == (handoffs["low_confidence"], "low_confidence")
    assert doubted.confidence is not None
    assert doubted.confidence < 0.5


def test_a_threshold_that_is_not_a_probability_is_refused_naming_it(
    tmp_path: Path, tiny_llama: tuple[Path, Path], qlora_settings: Callable[..., Settings]
) -> None:
    folder = tmp_path / "adapter"
    shutil.copytree(tiny_llama[1], folder)
    (folder / META_FILE).write_text(json.dumps({"handoff_below": "0.5"}))
    spec = build_registry(qlora_settings(qlora_adapter=str(folder)))["qlora"]
    with pytest.raises(ModelUnavailable, match="handoff_below must be a number from 0 to 1"):
        QLoRAAdapter(spec, IntentSet.load())
