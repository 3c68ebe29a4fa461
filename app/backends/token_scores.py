"""A sampled token's score as every local engine gives it: its id, its log-probability, and the
most likely tokens' ids and log-probabilities. Imports nothing of the service: the engines
use it."""

from __future__ import annotations

import torch

Scored = tuple[int, float, tuple[tuple[int, float], ...]]


def scored(logprobs: torch.Tensor, token: int, top: int) -> Scored:
    """`token` scored under one step's log-probabilities (vocab,), with the `top` likeliest."""
    best = torch.topk(logprobs, top) if top else None
    others = tuple(zip(best.indices.tolist(), best.values.tolist(), strict=True)) if best else ()
    return token, float(logprobs[token]), others
