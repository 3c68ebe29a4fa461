"""The training curve: loss and held-out accuracy per epoch, as a PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt


class EpochFigures(Protocol):
    @property
    def epoch(self) -> int: ...
    @property
    def train_loss(self) -> float: ...
    @property
    def val_accuracy(self) -> float | None: ...
    @property
    def val_exact(self) -> float | None: ...


def save_curve(history: Sequence[EpochFigures], path: Path) -> None:
    """Training loss (left axis) and held-out accuracy (right axis: the intent, and the whole
    answer word for word) against epochs."""
    epochs = [h.epoch for h in history]
    fig, loss_ax = plt.subplots(figsize=(7, 4), dpi=100)
    loss_ax.plot(epochs, [h.train_loss for h in history], color="tab:blue", marker="o")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("training loss", color="tab:blue")
    accuracy = [(h.epoch, h.val_accuracy) for h in history if h.val_accuracy is not None]
    if accuracy:
        acc_ax = loss_ax.twinx()
        acc_ax.plot(*zip(*accuracy, strict=True), color="tab:green", marker="s", label="intent")
        exact = [(h.epoch, h.val_exact) for h in history if h.val_exact is not None]
        acc_ax.plot(*zip(*exact, strict=True), color="tab:olive", marker="^", label="word for word")
        acc_ax.set_ylabel("held-out accuracy", color="tab:green")
        acc_ax.legend(loc="center right")
        acc_ax.set_ylim(0, 1)
        best = max(a for _, a in accuracy)
        loss_ax.set_title(f"best held-out intent accuracy {best:.1%}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
