"""How many intra-op threads training steps on: the count that trains fastest on this machine
now, measured, not assumed. A team of N threads meets at a barrier after each operation; when
another process holds one of the cores, every operation waits for the thread it descheduled.
Beside one CPU-bound neighbour on 2 cores, 2 threads trained 41 examples/s and 1 thread 168
(alone, 2 threads trained about 400): docs/custom-model.md, "Training on a busy machine"."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

TRIAL_STEPS = 4  # steps timed per count; the first of them, after the switch, is not counted
EVERY_S = 120.0  # how often the counts are timed again: the machine's load changes


class ThreadTuner:
    """Times `TRIAL_STEPS` training steps (steps that train like any other) at each thread
    count from `most` down to 1, keeps the fastest per example, and times them again every
    `every_s` seconds. `threads` before a step, `took` after it."""

    def __init__(
        self,
        most: int,
        every_s: float = EVERY_S,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.counts = sorted({most, max(1, most // 2), 1}, reverse=True)
        self.chosen = most
        self.history: list[tuple[int, dict[int, float]]] = []  # (step, seconds per example)
        self._every_s = every_s
        self._clock = clock
        self._trying: list[int] = list(self.counts) if len(self.counts) > 1 else []
        self._times: dict[int, list[float]] = {}
        self._next_trial_at = clock() + every_s
        self._steps = 0

    def threads(self) -> int:
        """The thread count for the next step, set in torch."""
        if not self._trying and len(self.counts) > 1 and self._clock() >= self._next_trial_at:
            self._trying, self._times = list(self.counts), {}
        count = self._trying[0] if self._trying else self.chosen
        if torch.get_num_threads() != count:
            torch.set_num_threads(count)
        return count

    def took(self, seconds: float, examples: int) -> None:
        """The step just run took `seconds` for `examples` examples."""
        self._steps += 1
        if not self._trying:
            return
        times = self._times.setdefault(self._trying[0], [])
        times.append(seconds / max(1, examples))
        if len(times) < TRIAL_STEPS:
            return
        self._trying.pop(0)
        if not self._trying:
            per_example = {n: statistics.median(t[1:]) for n, t in self._times.items()}
            self.chosen = min(per_example, key=per_example.__getitem__)
            self.history.append((self._steps, per_example))
            self._next_trial_at = self._clock() + self._every_s


@contextmanager
def training_threads(fixed: int | None) -> Iterator[ThreadTuner | None]:
    """A run's threads: `fixed`, or a tuner's from the process's count down (None: tuned);
    the process's count is back as it was afterwards."""
    before = torch.get_num_threads()
    if fixed is not None:
        torch.set_num_threads(fixed)
    try:
        yield None if fixed is not None else ThreadTuner(before)
    finally:
        torch.set_num_threads(before)
