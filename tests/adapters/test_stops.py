from __future__ import annotations

import pytest

from app.adapters.stops import StopScanner


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
    ],
)
def test_stop_scanner(
    stops: tuple[str, ...], deltas: list[str], expected: tuple[list[str], bool]
) -> None:
    assert _run(stops, deltas) == expected
