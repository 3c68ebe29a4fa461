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
from tokenizers import Tokenizer
from torch import Tensor

from app.backends.custom.gpt.dataset import (
    batches,
    encode_example,
    encode_reply,
    split_stratified,
)
from app.backends.custom.gpt.model import GPT, GPTConfig
from app.backends.custom.gpt.optimizing import Steps, moving_average, optimizer_for, progress_bar
from app.backends.custom.gpt.runs import Epoch, FinishedRun, TrainResult, epoch_of, save_run
from app.backends.custom.gpt.threads import ThreadTuner, training_threads
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
    # A budget that ends inside the first epoch is refused, saying what an epoch takes here:
    # such a run has not seen its data once (a 3-minute run on a busy machine saved 0.0%).
    allow_partial: bool = False
    # Intra-op threads; None: the count that trains fastest now, timed as it trains (a busy
    # machine's cores are not all ours: app/backends/custom/gpt/threads.py).
    threads: int | None = None


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


class BudgetTooShort(ValueError):
    """The time budget ends before the first epoch does; no checkpoint is written."""

    def __init__(self, minutes: float, needed_s: float):
        self.needed_s = needed_s
        super().__init__(
            f"a budget of {minutes:g} min ends inside the first epoch, which takes about "
            f"{needed_s / 60:.1f} min on this machine now (setup included): give --minutes "
            f"{math.ceil(needed_s / 60) + 1} or more, or --allow-partial to save what it learns"
        )


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
    with training_threads(cfg.threads) as tuner:
        return _train(examples, intents, out, cfg, tuner, conversations, meta, progress, on_epoch)


def _train(
    examples: Sequence[Example],
    intents: IntentSet,
    out: Path,
    cfg: TrainConfig,
    tuner: ThreadTuner | None,
    conversations: Sequence[FollowUpConversation],
    meta: dict[str, Any] | None,
    progress: bool,
    on_epoch: Callable[[Epoch], None] | None,
) -> TrainResult:
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    train_set, val_set = split_stratified(examples, cfg.val_fraction, cfg.seed)
    tokenizer, seqs, replies = _encoded(train_set, conversations, intents, cfg, rng)
    model = _build_model(tokenizer, cfg)
    averaged = moving_average(model, cfg.ema_decay)
    judged = model if averaged is None else cast(GPT, averaged.module)  # scored, kept, saved
    pad, sep = special_id(tokenizer, PAD), special_id(tokenizer, SEP)
    label_ids = torch.tensor([tokenizer.token_to_id(label) for label in intents.answer_labels])
    total = math.ceil(len(seqs) / cfg.batch_size) * cfg.epochs + cfg.reply_steps
    budget = cfg.max_minutes * 60 if cfg.max_minutes else math.inf
    steps = Steps(model, optimizer_for(model, cfg), averaged, label_ids, cfg, total, budget)
    steps.tuner = tuner
    bar = progress_bar(total, budget, progress)
    history: list[Epoch] = []
    best: tuple[tuple[float, float], dict[str, Tensor]] | None = None
    model.train()
    for epoch in range(1, cfg.epochs + 1):
        opening = [replies] * cfg.reply_steps if epoch == 1 else []
        epoch_batches = opening + batches(seqs, cfg.batch_size, rng)
        epoch_started = time.perf_counter()
        losses, out_of_time = steps.epoch(epoch, epoch_batches, (pad, sep), started, bar)
        if out_of_time and epoch == 1 and not cfg.allow_partial:
            bar.close()
            spent = time.perf_counter() - epoch_started
            needed = epoch_started - started + spent * len(epoch_batches) / max(1, len(losses))
            raise BudgetTooShort(cfg.max_minutes or 0.0, needed)
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
