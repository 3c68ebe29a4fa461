from __future__ import annotations

from pathlib import Path

import pytest
import torch

from app.backends.custom.gpt.checkpoint import load_checkpoint, read_config, save_checkpoint
from app.backends.custom.gpt.generate import Sampling, generate
from app.backends.custom.gpt.model import GPT, GPTConfig
from app.backends.custom.gpt.tokenizer import (
    EOS,
    TURN,
    encode_prompt,
    special_id,
    train_tokenizer,
)
from app.banking.intents import IntentSet
from app.settings import DEFAULT_CHECKPOINT


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    tokenizer = train_tokenizer(
        ["my card has not arrived", "cancel my transfer"] * 5, 280, ["card_arrival"]
    )
    torch.manual_seed(0)
    model = GPT(
        GPTConfig(
            vocab_size=tokenizer.get_vocab_size(), block_size=32, n_layer=1, n_head=2, n_embd=16
        )
    ).eval()
    version = save_checkpoint(
        tmp_path, model, tokenizer, {"data": "two sentences"}, restart_tokens=[5, 3]
    )
    loaded = load_checkpoint(tmp_path)
    assert loaded.restart_tokens == frozenset({3, 5})
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ]
    assert loaded.version == version
    assert loaded.meta == {"data": "two sentences"}
    assert loaded.model.config == model.config
    for (name, a), (_, b) in zip(
        model.state_dict().items(), loaded.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert loaded.model.lm_head.weight is loaded.model.wte.weight  # tying survives loading
    assert loaded.tokenizer.encode("card_arrival").tokens == ["card_arrival"]


def test_missing_checkpoint_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        read_config(tmp_path)


def test_default_checkpoint_answers_a_customer() -> None:
    ckpt = load_checkpoint(DEFAULT_CHECKPOINT)
    assert (DEFAULT_CHECKPOINT / "model.safetensors").stat().st_size < 20_000_000
    prompt = encode_prompt(ckpt.tokenizer, "I still have not received my new card")
    eos = special_id(ckpt.tokenizer, EOS)
    out = []
    assert ckpt.restart_tokens == {  # every intent, and the hand-off
        ckpt.tokenizer.token_to_id(label) for label in IntentSet.load().answer_labels
    }
    assert ckpt.tokenizer.token_to_id(TURN) is not None  # it reads earlier turns
    assert 0 < ckpt.meta["handoff_below"] < 1  # calibrated
    for token in generate(
        ckpt.model, prompt, Sampling(), max_new_tokens=128, restart=ckpt.restart_tokens
    ):
        if token == eos:
            break
        out.append(token)
    assert ckpt.tokenizer.decode(out) == IntentSet.load().answer("card_arrival")


def test_untied_embeddings_round_trip(tmp_path: Path) -> None:
    tokenizer = train_tokenizer(["hello world", "hello there"], vocab_size=270)
    torch.manual_seed(0)
    config = GPTConfig(
        vocab_size=tokenizer.get_vocab_size(),
        block_size=32,
        n_layer=1,
        n_head=2,
        n_embd=16,
        tie_embeddings=False,
    )
    model = GPT(config).eval()
    assert model.lm_head.weight.data_ptr() != model.wte.weight.data_ptr()
    save_checkpoint(tmp_path, model, tokenizer)
    loaded = load_checkpoint(tmp_path)
    assert loaded.model.config == config
    assert loaded.restart_tokens == frozenset()
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor), name
