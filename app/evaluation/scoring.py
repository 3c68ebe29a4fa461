"""Scores of an intent classification: accuracy, macro-F1, the most confused label pairs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

Pair = tuple[str, str | None]  # (true label, predicted label or None when none was parsed)


def accuracy(pairs: Sequence[Pair]) -> float:
    return sum(t == p for t, p in pairs) / len(pairs) if pairs else float("nan")


def macro_f1(pairs: Sequence[Pair]) -> float:
    """Unweighted mean of per-label F1 over the true labels (an unparsed answer is a miss)."""
    labels = sorted({t for t, _ in pairs})
    if not labels:
        return float("nan")
    scores = []
    for label in labels:
        tp = sum(t == label and p == label for t, p in pairs)
        fp = sum(t != label and p == label for t, p in pairs)
        fn = sum(t == label and p != label for t, p in pairs)
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / len(scores)


def confusions(pairs: Sequence[Pair], top: int = 10) -> list[tuple[str, str, int]]:
    """The `top` most frequent (true, predicted) mistakes, most frequent first."""
    counts = Counter((t, p if p is not None else "(none)") for t, p in pairs if t != p)
    return [(t, p, n) for (t, p), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))][:top]
