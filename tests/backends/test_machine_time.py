"""A local model's answers are billed their share of its machine's time."""

from __future__ import annotations

import pytest

from app.backends.machine_time import MachineMeter, MachinePrice


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_requests_decoded_together_share_each_second_and_add_up_to_the_busy_time() -> None:
    clock = Clock()
    meter = MachineMeter(MachinePrice("CPU-s", 2, 0.04), clock)
    first = meter.enter()  # alone for 1 s, together for 2 s
    clock.now = 1.0
    second = meter.enter()
    clock.now = 3.0
    first_s = meter.leave(first)
    clock.now = 4.0  # the second alone for its last second
    second_s = meter.leave(second)
    # 1 + 2/2 seconds each, on 2 cores: the machine was busy 4 s, 8 CPU-seconds in all
    assert (first_s, second_s) == (4.0, 4.0)


def test_an_idle_machine_bills_no_one() -> None:
    clock = Clock()
    meter = MachineMeter(MachinePrice("GPU-s", 1, 1.0), clock)
    entered = meter.enter()
    clock.now = 0.5
    assert meter.leave(entered) == 0.5
    clock.now = 100.0  # nobody running meanwhile
    entered = meter.enter()
    clock.now = 100.25
    assert meter.leave(entered) == 0.25


def test_a_price_is_per_unit_hour() -> None:
    price = MachinePrice("GPU-s", 1, 1.8)
    assert price.cost_usd(3600) == pytest.approx(1.8)
    assert price.cost_usd(2) == pytest.approx(0.001)
