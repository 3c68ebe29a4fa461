"""Training steps on the thread count that trains fastest now, timed, and timed again."""

from __future__ import annotations

from pathlib import Path

import torch

from app.backends.custom.gpt.threads import TRIAL_STEPS, ThreadTuner, training_threads
from app.backends.custom.gpt.train import TrainConfig, train
from app.banking.corpus import Example
from app.banking.intents import IntentSet


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _steps(tuner: ThreadTuner, seconds_per_example: dict[int, float], count: int) -> list[int]:
    """Run `count` steps of 10 examples, each as fast as its thread count is here."""
    used = []
    for _ in range(count):
        threads = tuner.threads()
        used.append(threads)
        assert torch.get_num_threads() == threads
        tuner.took(seconds_per_example[threads] * 10, 10)
    return used


def test_it_times_each_count_then_keeps_the_fastest_and_times_them_again_later() -> None:
    clock = Clock()
    before = torch.get_num_threads()
    try:
        tuner = ThreadTuner(4, every_s=60.0, clock=clock)
        assert tuner.counts == [4, 2, 1]
        busy = {4: 0.040, 2: 0.010, 1: 0.012}  # a neighbour holds some of the cores
        used = _steps(tuner, busy, 3 * TRIAL_STEPS + 5)
        assert used == [4] * TRIAL_STEPS + [2] * TRIAL_STEPS + [1] * TRIAL_STEPS + [2] * 5
        assert tuner.chosen == 2
        clock.now = 61.0  # the neighbour has gone: all four are fastest again
        alone = {4: 0.003, 2: 0.005, 1: 0.009}
        used = _steps(tuner, alone, 3 * TRIAL_STEPS + 2)
        assert used[-2:] == [4, 4]
        assert tuner.chosen == 4
        assert [step for step, _ in tuner.history] == [3 * TRIAL_STEPS, 6 * TRIAL_STEPS + 5]
    finally:
        torch.set_num_threads(before)


def test_the_first_step_after_a_switch_is_not_counted() -> None:
    """A switch costs its first step (the thread team is made again): it would blame the
    count switched to."""
    before = torch.get_num_threads()
    try:
        tuner = ThreadTuner(2, clock=Clock())
        for threads, times in ((2, [9.0, 1.0, 1.0, 1.0]), (1, [0.1, 1.5, 1.5, 1.5])):
            for seconds in times:
                assert tuner.threads() == threads
                tuner.took(seconds, 1)
        assert tuner.chosen == 2
    finally:
        torch.set_num_threads(before)


def test_one_core_leaves_nothing_to_time() -> None:
    tuner = ThreadTuner(1, clock=Clock())
    assert tuner.counts == [1]
    assert _steps(tuner, {1: 0.01}, 10) == [1] * 10
    assert tuner.history == []


def test_a_run_puts_the_process_s_thread_count_back(tmp_path: Path) -> None:
    before = torch.get_num_threads()
    fixed = before + 1  # a count the process does not run: one it must put back
    examples = [Example(f"my card {i} has not arrived", "card_arrival") for i in range(8)]
    config = TrainConfig(
        n_layer=1, n_head=1, n_embd=16, block_size=64, vocab_size=300, epochs=1,
        max_minutes=None, val_fraction=0.0, reply_steps=1, reply_repeats=1, threads=fixed,
    )  # fmt: skip
    train(examples, IntentSet.load(), tmp_path / "ckpt", config, progress=False)
    assert torch.get_num_threads() == before
    with training_threads(None) as tuner:
        assert tuner is not None
        assert tuner.counts[0] == before
    assert torch.get_num_threads() == before
