"""What a stop string costs the event loop: the scanner's time a delta, on the worst text for
it (every delta could begin each stop), at stop lengths up to the cap.

    python -m benchmarks.stop_scan [--deltas 2000]

A stream's deltas all pass the scanner on the event loop, so its time a delta is what one
streaming request with stops takes from every other request (and from /health/live).
"""

from __future__ import annotations

import argparse
import time

from app.backends.stops import StopScanner
from app.serving.limits import MAX_STOP_CHARS, MAX_STOPS


def per_delta_us(stop_chars: int, deltas: int) -> float:
    """Microseconds a one-character delta, with MAX_STOPS stops of `stop_chars` that the text
    keeps almost matching (a run of one letter, each stop ending in another)."""
    stops = tuple("a" * (stop_chars - 1) + end for end in "bcde"[:MAX_STOPS])
    scanner = StopScanner(stops)
    started = time.perf_counter()
    for _ in range(deltas):
        scanner.feed("a")
    return (time.perf_counter() - started) / deltas * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deltas", type=int, default=2000)
    args = parser.parse_args()
    print(f"{MAX_STOPS} stops, {args.deltas} one-character deltas, worst-case text")
    for chars in (8, 16, 32, MAX_STOP_CHARS):
        print(f"stop of {chars:>3} characters: {per_delta_us(chars, args.deltas):7.1f} µs a delta")


if __name__ == "__main__":
    main()
