"""`bankllm train`: train the from-scratch model on a `text,category` CSV."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from app.backends.custom.gpt.runs import CURVE, HELD_OUT, Epoch
from app.backends.custom.gpt.train import BudgetTooShort, TrainConfig, train
from app.banking.intents import IntentSet
from app.cli.flags import config_from
from app.cli.training_data import add_data_flags, training_data

MIN_ACCURACY = 0.5  # below it a run has not learned the intents: it fails, loudly


def add_parser(commands: Any) -> None:
    p: argparse.ArgumentParser = commands.add_parser(
        "train",
        help="train the custom model",
        description=(
            "Train a byte-level BPE tokenizer and a GPT so the model answers `intent: <label>` "
            "then the approved reply. Without --data it trains on our own corpus."
        ),
    )
    add_data_flags(p)
    p.add_argument(
        "--out",
        type=Path,
        default=Path("checkpoints/custom"),
        help="the checkpoint folder to write (default: checkpoints/custom)",
    )
    defaults = TrainConfig()
    _add_model_flags(p, defaults)
    _add_schedule_flags(p, defaults)
    p.set_defaults(run=run)


def _add_model_flags(p: argparse.ArgumentParser, d: TrainConfig) -> None:
    """The model's shape, and how long to train it."""
    p.add_argument("--epochs", type=int, default=d.epochs, help="at most (default: %(default)s)")
    p.add_argument(
        "--minutes",
        dest="max_minutes",
        type=_minutes,
        default=d.max_minutes,
        help="time budget: the schedule follows it, training stops when it is spent, and the "
        "progress bar counts its seconds; 0 for none, the epochs decide (default: %(default)s)",
    )
    p.add_argument(
        "--layers", dest="n_layer", type=int, default=d.n_layer, help="(default: %(default)s)"
    )
    p.add_argument(
        "--heads", dest="n_head", type=int, default=d.n_head, help="(default: %(default)s)"
    )
    p.add_argument(
        "--width", dest="n_embd", type=int, default=d.n_embd, help="(default: %(default)s)"
    )
    p.add_argument(
        "--vocab",
        dest="vocab_size",
        type=int,
        default=d.vocab_size,
        help="BPE vocabulary size (default: %(default)s)",
    )


def _add_schedule_flags(p: argparse.ArgumentParser, d: TrainConfig) -> None:
    """The optimizer, the loss and the hold-out."""
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="(default: %(default)s)")
    p.add_argument(
        "--lr", type=float, default=d.lr, help="peak learning rate (default: %(default)s)"
    )
    p.add_argument(
        "--label-weight",
        type=float,
        default=d.label_weight,
        help="loss weight of the intent label token (default: %(default)s)",
    )
    p.add_argument(
        "--reply-steps",
        type=int,
        default=d.reply_steps,
        help="steps on a batch of every reply that training opens with (default: %(default)s)",
    )
    p.add_argument(
        "--reply-repeats",
        type=int,
        default=d.reply_repeats,
        help="times each intent's reply is trained an epoch, from its label alone "
        "(default: %(default)s)",
    )
    p.add_argument("--dropout", type=float, default=d.dropout, help="(default: %(default)s)")
    p.add_argument(
        "--ema-decay",
        type=_decay,
        default=d.ema_decay,
        help="the weights scored and saved are a moving average of the trained ones, this much "
        "of it kept a step; 0 saves the trained weights themselves (default: %(default)s)",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=d.val_fraction,
        help="stratified held-out share, scored each epoch (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=d.seed, help="(default: %(default)s)")
    p.add_argument(
        "--threads",
        type=int,
        default=d.threads,
        help="intra-op threads; by default the count that trains fastest on this machine now, "
        "timed as it trains and again every 2 minutes (a busy machine's cores are not all ours)",
    )
    p.add_argument(
        "--allow-partial",
        action="store_true",
        help="save a run whose time budget ends inside the first epoch (refused otherwise)",
    )
    p.add_argument(
        "--min-accuracy",
        type=float,
        default=MIN_ACCURACY,
        help="a run whose best held-out intent accuracy is below this says so and exits 1; "
        "0 accepts any (default: %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data = training_data(args)
    cfg = config_from(TrainConfig, args)

    def report(e: Epoch) -> None:
        shown = (
            "n/a"
            if e.val_accuracy is None
            else f"{e.val_accuracy:.1%}, word for word {e.val_exact:.1%}"
        )
        print(
            f"epoch {e.epoch} ({e.seconds:.0f} s): loss {e.train_loss:.3f}, "
            f"held-out intent accuracy {shown}",
            flush=True,
        )

    print(f"training on {len(data.examples)} examples from {data.source}")
    try:
        result = train(
            data.examples,
            IntentSet.load(),
            args.out,
            cfg,
            conversations=data.conversations,
            meta={"data": data.source},
            on_epoch=report,
        )
    except BudgetTooShort as exc:
        raise SystemExit(f"bankllm train: {exc}") from None
    accuracy = (
        "n/a"
        if result.val_accuracy is None
        else (f"{result.val_accuracy:.1%} (word for word {result.val_exact:.1%})")
    )
    print(
        f"saved {args.out} (version {result.version}): {result.parameters:,} parameters, "
        f"{result.train_examples} train / {result.val_examples} held-out examples, "
        f"held-out intent accuracy {accuracy}, {result.seconds:.0f} s"
    )
    if result.val_examples:
        print(f"held-out split: {args.out / HELD_OUT}; curve: {args.out / CURVE}")
    if result.val_accuracy is not None and result.val_accuracy < args.min_accuracy:
        print(
            f"bankllm train: FAILED: the best held-out intent accuracy, "
            f"{result.val_accuracy:.1%}, is below --min-accuracy {args.min_accuracy:.0%}: "
            f"{args.out} is not fit to serve (more time, or --min-accuracy 0 to accept it)",
            file=sys.stderr,
        )
        return 1
    return 0


def _decay(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text}: not a number") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"{text}: a decay is at least 0 and below 1")
    return value


def _minutes(text: str) -> float | None:
    """A time budget in minutes; 0 for none."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text}: not a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text}: a budget is at least 0")
    return value or None
