"""What a local model's answer costs: its share of the machine's time. Requests decoded
together share the machine, so each second of it is split among the requests running in it
(processor sharing); a request is billed the sum of its shares, and the bills of all requests
add up to the time the machine was busy, however they were batched."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class MachinePrice:
    """A machine and its price: `units` of it (CPU cores, GPUs) at `usd_per_unit_hour`."""

    unit: str  # what one unit-second is called: "CPU-s", "GPU-s"
    units: float
    usd_per_unit_hour: float

    def cost_usd(self, unit_seconds: float) -> float:
        return round(unit_seconds * self.usd_per_unit_hour / 3600, 10)


class MachineMeter:
    """Bills each request its share of a machine. `enter` when a request starts using it,
    `leave` with what `enter` returned when it stops: the machine's unit-seconds it used."""

    def __init__(self, price: MachinePrice, clock: Callable[[], float] = time.monotonic):
        self.price = price
        self._clock = clock
        self._lock = threading.Lock()
        self._running = 0
        self._share = 0.0  # the seconds one request running since the start would be billed
        self._at = clock()

    def _advance(self) -> None:
        now = self._clock()
        if self._running:
            self._share += (now - self._at) / self._running
        self._at = now

    def enter(self) -> float:
        with self._lock:
            self._advance()
            self._running += 1
            return self._share

    def leave(self, entered: float) -> float:
        """The unit-seconds (the machine's units times its seconds) of a request that entered
        at `entered`."""
        with self._lock:
            self._advance()
            self._running -= 1
            return (self._share - entered) * self.price.units


class MachineMeters:
    """One meter per local model (its name, version and machine), made when first asked."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._meters: dict[tuple[str, str, MachinePrice], MachineMeter] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def of(self, name: str, version: str, price: MachinePrice) -> MachineMeter:
        key = (name, version, price)
        with self._lock:
            if (meter := self._meters.get(key)) is None:
                meter = self._meters[key] = MachineMeter(price, self._clock)
            return meter
