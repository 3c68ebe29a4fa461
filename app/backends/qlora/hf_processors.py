"""What the transformers engine does to a step's scores besides sampling: a structured row's
mask."""

from __future__ import annotations

import torch
from transformers import LogitsProcessor

from app.backends.grammar import TokenMask


class GrammarMask(LogitsProcessor):
    """One row's scores masked to what its grammar allows next (a structured reply)."""

    def __init__(self, mask: TokenMask, prompt_length: int):
        self._mask, self._seen = mask, prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[1] > self._seen:  # the token chosen at the step before
            self._mask.take(int(input_ids[0, -1]))
            self._seen = input_ids.shape[1]
        allowed = torch.zeros(scores.shape[-1], dtype=torch.bool)
        grammar = self._mask.allowed()[: scores.shape[-1]]
        allowed[: len(grammar)] = grammar
        return scores.masked_fill(~allowed.to(scores.device), -torch.inf)  # type: ignore[return-value]
