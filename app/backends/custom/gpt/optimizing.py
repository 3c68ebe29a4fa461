"""One training run's stepping: the loss (the label token weighted), the optimizer, the weights'
moving average, the learning rate by progress, a step on a batch, an epoch of them, and the
progress bar that counts them (or the time budget's seconds)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from app.backends.custom.gpt.dataset import pad_batch
from app.backends.custom.gpt.model import GPT
from app.backends.custom.gpt.threads import ThreadTuner


class StepSettings(Protocol):
    """What of a run's TrainConfig (app.backends.custom.gpt.train) its stepping reads."""

    @property
    def label_weight(self) -> float: ...
    @property
    def lr(self) -> float: ...
    @property
    def warmup_steps(self) -> int: ...
    @property
    def weight_decay(self) -> float: ...
    @property
    def question_loss(self) -> bool: ...


def progress_bar(steps: int, budget_s: float, progress: bool) -> tqdm[None]:
    """Steps; with a time budget, its seconds: the run ends when the budget is spent, so the
    total and the ETA are the budget's, not those of epochs that will never run."""
    if math.isfinite(budget_s):
        shape = "{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}{postfix}]"
        return tqdm(
            total=round(budget_s), desc="train", unit="s", bar_format=shape, disable=not progress
        )
    return tqdm(total=steps, desc="train", unit="step", disable=not progress)


def loss_of(logits: Tensor, targets: Tensor, label_ids: Tensor, label_weight: float) -> Tensor:
    """Cross-entropy over the scored tokens (logits (N, vocab), targets (N,)), the label
    token weighted."""
    losses = F.cross_entropy(logits, targets, ignore_index=-100, reduction="none")
    weights = (targets != -100).float()
    if label_weight != 1.0:
        weights = weights * torch.where(torch.isin(targets, label_ids), label_weight, 1.0)
    return (losses * weights).sum() / weights.sum()


def batch_loss(model: GPT, x: Tensor, y: Tensor, label_ids: Tensor, cfg: StepSettings) -> Tensor:
    """The loss of a batch, with logits computed for the scored positions only: the output
    layer is a quarter of this model's cost per position, and an answer is 4 of about 20."""
    scored = y != -100
    logits = model.lm_head(model.features(x)[scored])  # (N, vocab)
    return loss_of(logits, y[scored], label_ids, cfg.label_weight)


def lr_at(step: int, progress: float, cfg: StepSettings) -> float:
    """Linear warm-up, then cosine decay to a tenth of lr as progress goes from 0 to 1."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


def moving_average(model: GPT, decay: float) -> AveragedModel | None:
    """The moving average of the model's weights (and buffers), or None when decay is 0."""
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"ema_decay is in [0, 1), not {decay}")
    if decay == 0.0:
        return None
    average = get_ema_multi_avg_fn(decay)  # type: ignore[no-untyped-call]
    return AveragedModel(model, multi_avg_fn=average, use_buffers=True)


def optimizer_for(model: GPT, cfg: StepSettings) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95))


@dataclass
class Steps:
    """One run's optimizer and schedule: a step on a batch, its learning rate by progress."""

    model: GPT
    optimizer: torch.optim.Optimizer
    averaged: AveragedModel | None
    label_ids: Tensor
    cfg: StepSettings
    total: int  # the steps the epochs would take
    budget: float  # seconds; inf without one
    done: int = 0
    examples: int = 0  # trained on so far, for the bar's examples per second
    tuner: ThreadTuner | None = None  # picks each step's thread count (None: left as set)

    def step(self, x: Tensor, y: Tensor, elapsed: float) -> float:
        loss = batch_loss(self.model, x, y, self.label_ids, self.cfg)
        progress = max(self.done / self.total, elapsed / self.budget)
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.done, progress, self.cfg)
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
            threads = self.tuner.threads() if self.tuner else torch.get_num_threads()
            losses.append(self.step(x, y, elapsed))
            self.examples += len(batch)
            # the bar counts the budget's seconds, or the steps
            now = time.perf_counter() - started
            if self.tuner is not None:
                self.tuner.took(now - elapsed, len(batch))
            bar.update(min(now, self.budget) - bar.n if math.isfinite(self.budget) else 1)
            rate = f"{self.examples / now:.0f}"
            loss = f"{losses[-1]:.3f}"
            bar.set_postfix(epoch=epoch, loss=loss, examples_per_s=rate, threads=threads)
        return losses, False
