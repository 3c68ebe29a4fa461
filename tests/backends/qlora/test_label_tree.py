"""The label tree every qlora engine walks: which tokens keep to a label, and when one is whole."""

from __future__ import annotations

from app.backends.qlora.engine import following, spelled

LABELS = [[5, 1, 9], [5, 2, 9], [7, 9]]  # two labels that share their first token


def test_the_tokens_that_keep_to_a_label_narrow_as_the_path_grows() -> None:
    assert following([], LABELS) == [5, 7]
    assert following([5], LABELS) == [1, 2]
    assert following([5, 2], LABELS) == [9]


def test_a_label_is_chosen_only_once_spelled_out_whole() -> None:
    assert spelled([5, 2], LABELS) is None
    assert spelled([5, 2, 9], LABELS) == 1
    assert spelled([7, 9], LABELS) == 2
