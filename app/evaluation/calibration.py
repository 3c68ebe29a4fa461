"""The confidence below which a model hands an answer off, chosen on labelled examples so that
at most a given share of in-scope questions are handed off (its `out_of_scope` answers to
them included)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from app.banking.corpus import Example
from app.banking.intents import OUT_OF_SCOPE
from app.evaluation.evaluate import ExampleAnswer

DEFAULT_HANDOFF_SHARE = 0.05


def handoff_threshold(
    examples: Sequence[Example], answers: Sequence[ExampleAnswer], share: float
) -> float:
    """The highest threshold that hands off at most `share` of the in-scope examples: the
    confidences of the answers that named an intent, the budget what `out_of_scope` answers
    left of it. 0.0 (never) when they used it all up; ValueError when there is nothing to
    choose from (no in-scope example, no confidence) or the share would hand off them all."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"a hand-off share is at least 0 and below 1, not {share}")
    in_scope = [a for e, a in zip(examples, answers, strict=True) if e.category != OUT_OF_SCOPE]
    away = sum(a.handoff == OUT_OF_SCOPE for a in in_scope)
    confidences = sorted(
        a.confidence
        for a in in_scope
        if a.confidence is not None and a.handoff != OUT_OF_SCOPE and a.error is None
    )
    if not confidences:
        raise ValueError("no in-scope answer gave a confidence: nothing to calibrate on")
    budget = math.floor(share * len(in_scope) + 1e-9) - away  # 0.29 * 100 is 28.999...
    if budget <= 0:
        return 0.0
    if budget >= len(confidences):
        raise ValueError(f"a share of {share} would hand off every in-scope answer")
    return confidences[budget]  # the `budget` below it are handed off (fewer on a tie)
