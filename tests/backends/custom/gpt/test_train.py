from __future__ import annotations

import re
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from app.backends.custom.gpt.checkpoint import load_checkpoint
from app.backends.custom.gpt.dataset import (
    encode_example,
    encode_reply,
    pad_batch,
    split_stratified,
)
from app.backends.custom.gpt.optimizing import loss_of
from app.backends.custom.gpt.runs import Epoch
from app.backends.custom.gpt.tokenizer import train_tokenizer
from app.backends.custom.gpt.train import train
from app.backends.custom.gpt.validation import AnswerScores, answer_scores
from app.banking.corpus import Example, read_csv
from app.banking.intents import IntentSet
from tests.helpers import TINY

# two epochs and a hold-out: what these tests check is per epoch
SMALL = replace(TINY, block_size=96, epochs=2, batch_size=16, warmup_steps=2, val_fraction=0.25)


def _examples() -> list[Example]:
    texts = {
        "card_arrival": [
            "my card has not come",
            "where is the card you sent",
            "card still late",
            "no card in the post yet",
        ],
        "lost_or_stolen_card": [
            "I lost my card",
            "my card was taken from me",
            "cannot find my card",
            "thief has my card",
        ],
    }
    return [Example(t, label) for label, group in texts.items() for t in group]


def test_split_holds_out_each_category_and_keeps_groups_together() -> None:
    examples = [
        Example(f"{g} v{i}", label, g)
        for label in ("a", "b")
        for g in (f"{label}1", f"{label}2", f"{label}3", f"{label}4")
        for i in range(3)
    ]
    train_set, val = split_stratified(examples, 0.25, seed=0)
    assert len(train_set) == 18
    assert len(val) == 6
    assert {e.category for e in val} == {"a", "b"}
    assert not {e.group for e in val} & {e.group for e in train_set}


def test_train_writes_a_checkpoint_that_reports_its_accuracy(tmp_path: Path) -> None:
    epochs: list[Epoch] = []
    result = train(
        _examples(),
        IntentSet.load(),
        tmp_path,
        SMALL,
        meta={"data": "test"},
        progress=False,
        on_epoch=epochs.append,
    )
    ckpt = load_checkpoint(tmp_path)
    assert epochs == result.history
    assert [e.epoch for e in epochs] == [1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "config.json",
        "heldout.csv",
        "model.safetensors",
        "tokenizer.json",
        "training_curve.png",
    ]
    assert read_csv(tmp_path / "heldout.csv") == split_stratified(_examples(), 0.25, 0)[1]
    assert (tmp_path / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert ckpt.meta["history"] == [asdict(e) for e in epochs]
    best = max(epochs, key=lambda e: (e.val_exact or 0.0, e.val_accuracy or 0.0))
    assert (result.val_exact, result.val_accuracy) == (best.val_exact, best.val_accuracy)
    assert ckpt.version == result.version
    assert ckpt.meta["data"] == "test"
    assert ckpt.meta["epochs_run"] == 2
    assert (result.train_examples, result.val_examples) == (6, 2)
    assert result.val_accuracy is not None
    assert 0.0 <= result.val_accuracy <= 1.0
    held_out = split_stratified(_examples(), 0.25, 0)[1]
    assert answer_scores(ckpt.model, ckpt.tokenizer, IntentSet.load(), held_out) == (
        AnswerScores(result.val_accuracy, result.val_exact or 0.0)
    )


def test_train_rejects_categories_outside_the_intent_set(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not_a_label"):
        train([Example("hello", "not_a_label")], IntentSet.load(), tmp_path, SMALL, progress=False)


def test_the_saved_weights_are_the_moving_average_of_the_trained_ones(tmp_path: Path) -> None:
    # one batch an epoch, so an epoch is a step; in the warm-up, whose rates do not depend
    # on the number of epochs, the runs of one and of two epochs take the same first step
    one_step = replace(SMALL, val_fraction=0.0, reply_steps=0, batch_size=64, warmup_steps=4)
    two_steps = replace(one_step, epochs=2)
    weights = {}
    for name, cfg in {
        "first": replace(one_step, epochs=1),
        "second": two_steps,
        "averaged": replace(two_steps, ema_decay=0.25),
    }.items():
        train(_examples(), IntentSet.load(), tmp_path / name, cfg, progress=False)
        weights[name] = load_checkpoint(tmp_path / name).model.state_dict()
    assert weights["averaged"].keys() == weights["second"].keys()
    assert all(
        torch.allclose(averaged, 0.25 * weights["first"][key] + 0.75 * weights["second"][key])
        for key, averaged in weights["averaged"].items()
    )
    assert not torch.equal(weights["first"]["lm_head.weight"], weights["second"]["lm_head.weight"])


def test_with_a_hold_out_the_averaged_weights_are_scored_and_the_best_epoch_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def scored_weights(ema_decay: float, out: Path) -> list[dict[str, torch.Tensor]]:
        weights: list[dict[str, torch.Tensor]] = []

        def score(model: torch.nn.Module, *_: object) -> AnswerScores:  # epoch 2 answers best
            weights.append({k: v.clone() for k, v in model.state_dict().items()})
            return AnswerScores(0.5, 1.0 if len(weights) == 2 else 0.0)

        monkeypatch.setattr("app.backends.custom.gpt.train.answer_scores", score)
        cfg = replace(SMALL, epochs=3, ema_decay=ema_decay)
        train(_examples(), IntentSet.load(), out, cfg, progress=False)
        return weights

    averaged = scored_weights(0.5, tmp_path / "averaged")
    trained = scored_weights(0.0, tmp_path / "trained")  # the same steps, unaveraged
    saved = load_checkpoint(tmp_path / "averaged").model.state_dict()
    assert (len(averaged), len(trained)) == (3, 3)
    assert all(torch.equal(saved[key], value) for key, value in averaged[1].items())
    assert not torch.equal(averaged[1]["lm_head.weight"], averaged[2]["lm_head.weight"])
    assert not torch.equal(averaged[1]["lm_head.weight"], trained[1]["lm_head.weight"])


def test_an_ema_decay_outside_0_to_1_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=re.escape("ema_decay is in [0, 1), not 1.0")):
        train(_examples(), IntentSet.load(), tmp_path, replace(SMALL, ema_decay=1.0))


def test_label_weight_scales_the_label_tokens_share_of_theloss_of() -> None:
    logits = torch.zeros(1, 3, 5)
    logits[0, 0, 1] = 2.0  # token 1 (a label) is predicted well, the others are not
    targets = torch.tensor([[1, 2, -100]])
    labels = torch.tensor([1])
    good, bad = F.cross_entropy(logits[0, :2], targets[0, :2], reduction="none").tolist()
    flat, flat_targets = logits.flatten(0, 1), targets.flatten()
    assert loss_of(flat, flat_targets, labels, 1.0).item() == pytest.approx((good + bad) / 2)
    assert loss_of(flat, flat_targets, labels, 3.0).item() == pytest.approx((3 * good + bad) / 4)


def test_an_example_ends_at_its_label_and_its_reply_goes_on_from_that_label() -> None:
    intents = IntentSet.load()
    tokenizer = train_tokenizer(["my card has not come"] * 3, 280, intents.labels)
    question = encode_example(tokenizer, Example("my card has not come", "card_arrival"), 256)
    reply = encode_reply(tokenizer, intents, "card_arrival", 256)
    assert tokenizer.decode(question, skip_special_tokens=False) == (
        "<|bos|>my card has not come<|sep|>intent: card_arrival"
    )
    assert reply[0] == question[-1]
    assert tokenizer.decode(reply, skip_special_tokens=False) == (
        f"card_arrival\n{intents.intents['card_arrival'].reply}<|eos|>"
    )


def test_a_long_text_is_cut_but_never_its_answer() -> None:
    intents = IntentSet.load()
    tokenizer = train_tokenizer(["card"] * 3, 280, intents.labels)
    ids = encode_example(tokenizer, Example("card " * 300, "card_arrival"), 256)
    text = tokenizer.decode(ids, skip_special_tokens=False)
    assert len(ids) == 256
    assert text.startswith("<|bos|>card card")
    assert text.endswith("<|sep|>intent: card_arrival")


def test_with_a_time_budget_the_progress_bar_counts_its_seconds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train(_examples(), IntentSet.load(), tmp_path, replace(SMALL, max_minutes=1.0))
    budgeted = capsys.readouterr().err
    train(_examples(), IntentSet.load(), tmp_path / "steps", replace(SMALL, max_minutes=None))
    stepped = capsys.readouterr().err
    assert "/60 s [" in budgeted  # the total is the budget, not the epochs' steps
    assert re.search(r"examples_per_s=\d+", budgeted)
    assert "step" not in budgeted
    assert "step" in stepped


def test_with_sep_a_question_is_trained_on_its_answer_and_a_reply_on_every_token() -> None:
    question, reply = [1, 5, 6, 2, 7, 9], [9, 3, 4, 8]  # <bos> a b <sep> intent: <label>
    x, y = pad_batch([question, reply], pad=0, sep=2)
    assert x.tolist() == [[1, 5, 6, 2, 7], [9, 3, 4, 0, 0]]
    assert y.tolist() == [[-100, -100, -100, 7, 9], [3, 4, 8, -100, -100]]
    assert pad_batch([question], pad=0)[1].tolist() == [[5, 6, 2, 7, 9]]
