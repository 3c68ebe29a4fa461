"""Training loop: our answer format on any `text,category` data, with a held-out accuracy."""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from torch import Tensor
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from app.backends.custom.gpt.dataset import (
    batches,
    encode_example,
    encode_reply,
    pad_batch,
    split_stratified,
)
from app.backends.custom.gpt.model import GPT, GPTConfig
from app.backends.custom.gpt.runs import Epoch, FinishedRun, TrainResult, epoch_of, save_run
from app.backends.custom.gpt.tokenizer import PAD, SEP, special_id, train_tokenizer
from app.backends.custom.gpt.validation import answer_scores
from app.banking.corpus import Example
from app.banking.followups import FollowUpConversation, in_conversation
from app.banking.intents import IntentSet

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    n_layer: int = 3
    n_head: int = 4
    n_embd: int = 192
    block_size: int = 256
    vocab_size: int = 2048  # BPE merges, before the label tokens are added
    dropout: float = 0.1  # ~a point more held-out accuracy on one Banking77 split in 3 minutes
    # Untied: a label is both the answer the question leads to (an output) and the start of
    # its reply (an input); tied, classification keeps moving the input the reply is learnt
    # from, and the replies never hold.
    tie_embeddings: bool = False
    # Loss weight of the intent label token against the customer's own tokens: weighting the
    # label makes the model generalize to unseen phrasings (held-out accuracy on our corpus:
    # 20% at 1, 43% at 10).
    label_weight: float = 10.0
    # Replies are decoded from the label alone. Training opens with this many steps on a batch
    # of every reply, at the schedule's high learning rate: memorizing 77 replies takes about
    # 100 such steps, which, spread thinly over the epochs, never add up before the rate falls.
    reply_steps: int = 100
    # Then each reply is trained again this many times an epoch: at 24, not 8, the replies
    # come out word for word three epochs sooner, when the intent accuracy has peaked.
    reply_repeats: int = 24
    # Train on the customer's own tokens too, not only on the answer. Off: those targets pull
    # the model's next-token predictions away from the replies it memorized (word for word in
    # 3 minutes on Banking77: 1.5% with them, 90.1% without).
    question_loss: bool = False
    # With conversations to train on, this share of the single questions is trained again after
    # an unrelated earlier question: the latest turn, clear alone, outweighs what came before.
    unrelated_share: float = 0.1
    epochs: int = 30
    max_minutes: float | None = 10.0  # time budget: the schedule follows time, then stops
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 50
    # The weights judged each epoch, kept and saved are an exponential moving average of the
    # trained ones, this much of it kept a step (0: the trained weights themselves). Averaged,
    # the held-out accuracy reaches its plateau epochs sooner (no warm-up: a run of a few
    # hundred steps still carries some of its first steps' weights).
    ema_decay: float = 0.995
    val_fraction: float = 0.1  # stratified hold-out for the reported accuracy
    seed: int = 0


def progress_bar(steps: int, budget_s: float, progress: bool) -> tqdm[None]:
    """Steps; with a time budget, its seconds: the run ends when the budget is spent, so the
    total and the ETA are the budget's, not those of epochs that will never run."""
    if math.isfinite(budget_s):
        shape = "{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}{postfix}]"
        return tqdm(
            total=round(budget_s), desc="train", unit="s", bar_format=shape, disable=not progress
        )
    return tqdm(total=steps, desc="train", unit="step", disable=not progress)


def _loss(logits: Tensor, targets: Tensor, label_ids: Tensor, label_weight: float) -> Tensor:
    """Cross-entropy over the scored tokens (logits (N, vocab), targets (N,)), the label
    token weighted."""
    losses = F.cross_entropy(logits, targets, ignore_index=-100, reduction="none")
    weights = (targets != -100).float()
    if label_weight != 1.0:
        weights = weights * torch.where(torch.isin(targets, label_ids), label_weight, 1.0)
    return (losses * weights).sum() / weights.sum()


def _batch_loss(model: GPT, x: Tensor, y: Tensor, label_ids: Tensor, cfg: TrainConfig) -> Tensor:
    """The loss of a batch, with logits computed for the scored positions only: the output
    layer is a quarter of this model's cost per position, and an answer is 4 of about 20."""
    scored = y != -100
    logits = model.lm_head(model.features(x)[scored])  # (N, vocab)
    return _loss(logits, y[scored], label_ids, cfg.label_weight)


def _lr_at(step: int, progress: float, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to a tenth of lr as progress goes from 0 to 1."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


def _build_model(tokenizer: Tokenizer, cfg: TrainConfig) -> GPT:
    return GPT(
        GPTConfig(
            vocab_size=tokenizer.get_vocab_size(),
            block_size=cfg.block_size,
            n_layer=cfg.n_layer,
            n_head=cfg.n_head,
            n_embd=cfg.n_embd,
            dropout=cfg.dropout,
            tie_embeddings=cfg.tie_embeddings,
        )
    )


def _averaged(model: GPT, decay: float) -> AveragedModel | None:
    """The moving average of the model's weights (and buffers), or None when decay is 0."""
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"ema_decay is in [0, 1), not {decay}")
    if decay == 0.0:
        return None
    average = get_ema_multi_avg_fn(decay)  # type: ignore[no-untyped-call]
    return AveragedModel(model, multi_avg_fn=average, use_buffers=True)


def _optimizer(model: GPT, cfg: TrainConfig) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95))


@dataclass
class _Steps:
    """One run's optimizer and schedule: a step on a batch, its learning rate by progress."""

    model: GPT
    optimizer: torch.optim.Optimizer
    averaged: AveragedModel | None
    label_ids: Tensor
    cfg: TrainConfig
    total: int  # the steps the epochs would take
    budget: float  # seconds; inf without one
    done: int = 0

    def step(self, x: Tensor, y: Tensor, elapsed: float) -> float:
        loss = _batch_loss(self.model, x, y, self.label_ids, self.cfg)
        progress = max(self.done / self.total, elapsed / self.budget)
        for group in self.optimizer.param_groups:
            group["lr"] = _lr_at(self.done, progress, self.cfg)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        if self.averaged is not None:
            self.averaged.update_parameters(self.model)
        self.done += 1
        return loss.item()

    def epoch(
        self,
        epoch: int,
        epoch_batches: list[list[list[int]]],
        pad_sep: tuple[int, int],
        started: float,
        bar: tqdm[None],
    ) -> tuple[list[float], bool]:
        """One epoch's steps: their losses, and whether the time budget ran out in it."""
        pad, sep = pad_sep
        losses: list[float] = []
        for batch in epoch_batches:
            if (elapsed := time.perf_counter() - started) > self.budget:
                return losses, True
            x, y = pad_batch(batch, pad, None if self.cfg.question_loss else sep)
            losses.append(self.step(x, y, elapsed))
            # the bar counts the budget's seconds, or the steps
            done = min(time.perf_counter() - started, self.budget) - bar.n
            bar.update(done if math.isfinite(self.budget) else 1)
            bar.set_postfix(epoch=epoch, loss=f"{losses[-1]:.3f}")
        return losses, False


def _encoded(
    train_set: Sequence[Example],
    conversations: Sequence[FollowUpConversation],
    intents: IntentSet,
    cfg: TrainConfig,
    rng: random.Random,
) -> tuple[Tokenizer, list[list[int]], list[list[int]]]:
    """The tokenizer trained on the data and the replies, the training sequences (the
    examples, those read with earlier turns, then each taught reply `reply_repeats` times),
    and the replies alone."""
    labels = intents.answer_labels
    said = [turn for c in conversations for turn in c.turns]
    corpus = [e.text for e in train_set] + said + [intents.answer(label) for label in labels]
    tokenizer = train_tokenizer(
        corpus, cfg.vocab_size, label_tokens=labels, turns=bool(conversations)
    )
    if conversations:
        train_set = [
            *train_set,
            *in_conversation(train_set, conversations, cfg.unrelated_share, rng),
        ]
    seqs = [encode_example(tokenizer, e, cfg.block_size) for e in train_set]
    taught = sorted({e.category for e in train_set})  # the intents this data has
    replies = [encode_reply(tokenizer, intents, label, cfg.block_size) for label in taught]
    return tokenizer, seqs + replies * cfg.reply_repeats, replies


def train(
    examples: Sequence[Example],
    intents: IntentSet,
    out: Path,
    cfg: TrainConfig,
    *,
    conversations: Sequence[FollowUpConversation] = (),
    meta: dict[str, Any] | None = None,
    progress: bool = True,
    on_epoch: Callable[[Epoch], None] | None = None,
) -> TrainResult:
    """Train a tokenizer and a GPT on examples; save the checkpoint folder to out, with the
    held-out split and the training curve beside it. With a hold-out, the best epoch's
    weights are kept (early stopping). With `conversations`, the model also learns to read a
    follow-up with the customer's earlier turns (training only: the hold-out is of examples)."""
    unknown = sorted({e.category for e in examples} - set(intents.answer_labels))
    if unknown:
        raise ValueError(f"categories not in the intent set: {unknown[:5]}")
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    train_set, val_set = split_stratified(examples, cfg.val_fraction, cfg.seed)
    tokenizer, seqs, replies = _encoded(train_set, conversations, intents, cfg, rng)
    model = _build_model(tokenizer, cfg)
    averaged = _averaged(model, cfg.ema_decay)
    judged = model if averaged is None else cast(GPT, averaged.module)  # scored, kept, saved
    pad, sep = special_id(tokenizer, PAD), special_id(tokenizer, SEP)
    label_ids = torch.tensor([tokenizer.token_to_id(label) for label in intents.answer_labels])
    total = math.ceil(len(seqs) / cfg.batch_size) * cfg.epochs + cfg.reply_steps
    budget = cfg.max_minutes * 60 if cfg.max_minutes else math.inf
    steps = _Steps(model, _optimizer(model, cfg), averaged, label_ids, cfg, total, budget)
    bar = progress_bar(total, budget, progress)
    history: list[Epoch] = []
    best: tuple[tuple[float, float], dict[str, Tensor]] | None = None
    model.train()
    for epoch in range(1, cfg.epochs + 1):
        opening = [replies] * cfg.reply_steps if epoch == 1 else []
        epoch_batches = opening + batches(seqs, cfg.batch_size, rng)
        losses, out_of_time = steps.epoch(epoch, epoch_batches, (pad, sep), started, bar)
        scores = answer_scores(judged, tokenizer, intents, val_set) if val_set else None
        history.append(epoch_of(epoch, started, losses, scores))
        if on_epoch is not None:
            on_epoch(history[-1])
        # keep the epoch that answers most held-out examples word for word, then by intent
        if scores is not None and (best is None or (scores.exact, scores.intent) > best[0]):
            best = ((scores.exact, scores.intent), copy.deepcopy(judged.state_dict()))
        if out_of_time:
            logger.info("time budget of %.1f min reached in epoch %d", cfg.max_minutes, epoch)
            break
    bar.close()
    if best is not None:
        judged.load_state_dict(best[1])
    judged.eval()
    exact, kept = best[0] if best is not None else (None, None)
    run = FinishedRun(asdict(cfg), time.perf_counter() - started, history, kept, exact)
    version = save_run(
        out, judged, tokenizer, label_ids.tolist(), run, meta or {}, train_set, val_set
    )
    sizes = (model.num_parameters(), len(train_set), len(val_set))
    return TrainResult(version, kept, exact, run.seconds, *sizes, history)
