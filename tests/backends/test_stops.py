from __future__ import annotations

import pytest

from app.backends.stops import StopScanner


def _run(stops: tuple[str, ...], deltas: list[str]) -> tuple[list[str], bool]:
    scanner = StopScanner(stops)
    out = []
    for delta in deltas:
        out.append(scanner.feed(delta))
        if scanner.stopped:
            break
    else:
        out.append(scanner.flush())
    return out, scanner.stopped


@pytest.mark.parametrize(
    ("stops", "deltas", "expected"),
    [
        ((), ["a", "b"], (["a", "b", ""], False)),
        (("END",), ["hello E", "N", "D tail"], (["hello ", "", ""], True)),
        (("END",), ["hello E", "N", "o"], (["hello ", "", "ENo", ""], False)),
        (("\n\n", "."), ["one. two"], (["one"], True)),
        (("ab", "b"), ["xab"], (["x"], True)),
        (("END",), ["tail E"], (["tail ", "E"], False)),
        (("END",), ["tail EN"], (["tail ", "EN"], False)),
        (("aab",), ["aaa", "a", "b"], (["a", "a", ""], True)),
        (("abab",), ["xaba", "b"], (["x", ""], True)),
        (("abab",), ["xaba", "x"], (["x", "abax", ""], False)),
        (("E", "END"), ["xE"], (["x"], True)),
    ],
)
def test_stop_scanner(
    stops: tuple[str, ...], deltas: list[str], expected: tuple[list[str], bool]
) -> None:
    assert _run(stops, deltas) == expected


def test_the_held_back_end_is_the_longest_that_may_still_become_a_stop() -> None:
    stops = ("a" * 63 + "b", "zz")
    scanner = StopScanner(stops)
    emitted = [scanner.feed("a") for _ in range(200)]  # every delta a possible start
    assert "".join(emitted) == "a" * (200 - 63)
    assert scanner.feed("b") == ""
    assert scanner.stopped
