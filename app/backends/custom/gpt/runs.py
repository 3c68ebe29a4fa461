"""What a training run leaves: its epochs, its result, and the checkpoint folder with the
held-out split and the training curve beside it."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from tokenizers import Tokenizer

from app.backends.custom.gpt.checkpoint import save_checkpoint
from app.backends.custom.gpt.curve import save_curve
from app.backends.custom.gpt.model import GPT
from app.backends.custom.gpt.validation import AnswerScores
from app.banking.corpus import Example, write_csv

HELD_OUT = "heldout.csv"  # the validation split, written next to the checkpoint
CURVE = "training_curve.png"


@dataclass(frozen=True)
class Epoch:
    epoch: int
    seconds: float
    train_loss: float
    val_accuracy: float | None  # held-out intent accuracy
    val_exact: float | None  # held-out share answered word for word (intent and reply)


@dataclass(frozen=True)
class TrainResult:
    version: str
    val_accuracy: float | None  # of the weights kept: the best epoch when there is a hold-out
    val_exact: float | None
    seconds: float
    parameters: int
    train_examples: int
    val_examples: int
    history: list[Epoch] = field(default_factory=list)


class FinishedRun(NamedTuple):
    """What a finished run tells its checkpoint."""

    config: dict[str, Any]  # the TrainConfig's fields
    seconds: float
    history: list[Epoch]
    val_accuracy: float | None  # of the weights kept
    val_exact: float | None


def epoch_of(epoch: int, started: float, losses: list[float], scores: AnswerScores | None) -> Epoch:
    return Epoch(
        epoch,
        round(time.perf_counter() - started, 1),
        sum(losses) / max(1, len(losses)),
        scores.intent if scores else None,
        scores.exact if scores else None,
    )


def save_run(
    out: Path,
    judged: GPT,
    tokenizer: Tokenizer,
    restart_tokens: list[int],
    run: FinishedRun,
    meta: dict[str, Any],
    train_set: Sequence[Example],
    val_set: Sequence[Example],
) -> str:
    """The checkpoint, its held-out split and its training curve; the checkpoint's version."""
    info = {
        **meta,
        "train_config": run.config,
        "epochs_run": len(run.history),
        "seconds": round(run.seconds, 1),
        "val_accuracy": run.val_accuracy,
        "val_exact": run.val_exact,
        "train_examples": len(train_set),
        "val_examples": len(val_set),
        "history": [asdict(h) for h in run.history],
    }
    version = save_checkpoint(out, judged, tokenizer, info, restart_tokens=restart_tokens)
    if val_set:
        write_csv(out / HELD_OUT, list(val_set))
    save_curve(run.history, out / CURVE)
    return version
