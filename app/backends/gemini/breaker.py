"""A circuit breaker for a remote model: after N consecutive failures it fails fast for a
cooldown, then lets one probe through; the probe's result closes or reopens it."""

from __future__ import annotations

import math
from time import monotonic
from typing import Literal

from app.errors import CircuitOpen

State = Literal["closed", "open", "half_open"]


def now() -> float:
    return monotonic()  # looked up per call, so tests can move the clock


class CircuitBreaker:
    def __init__(self, name: str, failures: int, cooldown_s: float):
        self._name = name
        self._threshold = failures
        self._cooldown_s = cooldown_s
        self._failures = 0
        self._opened_at = 0.0
        self._state: State = "closed"
        self._probing = False

    @property
    def state(self) -> State:
        return self._state

    @property
    def problem(self) -> str | None:
        """Why requests fail fast now, or None."""
        if self._state == "closed":
            return None
        return (
            f"{self._name}: circuit open after {self._failures} consecutive upstream failures; "
            f"next probe in {self._retry_after_s()} s"
        )

    def admit(self) -> bool:
        """Let a request through, or raise CircuitOpen. True when the request is the probe."""
        if self._state == "closed":
            return False
        if self._state == "open" and now() - self._opened_at >= self._cooldown_s:
            self._state = "half_open"
        if self._state == "half_open" and not self._probing:
            self._probing = True
            return True
        raise CircuitOpen(
            f"{self._name} failed {self._failures} times in a row; failing fast for "
            f"{self._retry_after_s()} s before trying it again",
            self._retry_after_s(),
        )

    def succeeded(self, probe: bool) -> None:
        self._failures, self._state = 0, "closed"
        if probe:
            self._probing = False

    def failed(self, probe: bool) -> None:
        self._failures += 1
        if probe:
            self._probing = False
        if probe or self._failures >= self._threshold:
            self._state, self._opened_at = "open", now()

    def abandoned(self, probe: bool) -> None:
        """The request ended without a verdict (the client left); another may probe."""
        if probe:
            self._probing = False

    def _retry_after_s(self) -> int:
        left = self._cooldown_s - (now() - self._opened_at)
        return max(1, math.ceil(left))
