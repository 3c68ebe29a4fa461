from __future__ import annotations

import pytest

from app.evaluation.scoring import accuracy, confusions, macro_f1

PAIRS: list[tuple[str, str | None]] = [
    ("a", "a"),
    ("a", "a"),
    ("a", "b"),
    ("b", "b"),
    ("b", "a"),
    ("c", None),
    ("c", "c"),
    ("a", "b"),
]


def test_accuracy() -> None:
    assert accuracy(PAIRS) == 4 / 8


def test_macro_f1_averages_per_label_f1() -> None:
    # a: tp 2, fp 1, fn 2 -> 4/7; b: tp 1, fp 2, fn 1 -> 2/5; c: tp 1, fp 0, fn 1 -> 2/3
    assert macro_f1(PAIRS) == pytest.approx((4 / 7 + 2 / 5 + 2 / 3) / 3)


def test_confusions_most_frequent_first() -> None:
    assert confusions(PAIRS) == [("a", "b", 2), ("b", "a", 1), ("c", "(none)", 1)]
    assert confusions(PAIRS, top=1) == [("a", "b", 2)]
