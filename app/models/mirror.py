"""One mirrored request: the live request and the shadow's answer to it, settled together."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from app.backends.protocol import Message, SamplingParams
from app.models.loaded import Loaded
from app.telemetry.record import RequestRecord


@dataclass(frozen=True)
class Answered:
    """What the shadow did with one mirrored request."""

    status: str
    error_type: str | None
    intent: str | None
    latency_ms: float
    completion_tokens: int
    cost_usd: float | None


class Mirror:
    """One mirrored request. Its row is written once both sides are done, whichever is last:
    the live request (its record committed) and the shadow (its answer, or its failure)."""

    __slots__ = (
        "_answered",
        "_live_done",
        "_settle_pair",
        "conversation",
        "loaded",
        "params",
        "record",
    )

    def __init__(
        self,
        settle: Callable[[Mirror, Answered], None],
        loaded: Loaded,
        record: RequestRecord,
        conversation: tuple[Message, ...],
        params: SamplingParams,
    ):
        self._settle_pair = settle  # called once, with both sides
        self.loaded = loaded
        self.record = record
        self.conversation = conversation
        self.params = params
        self._answered: Answered | None = None
        self._live_done = False

    def live_done(self) -> None:
        """The live request ended and its record is committed."""
        self._live_done = True
        self._settle()

    def answered(self, answer: Answered) -> None:
        self._answered = answer
        self._settle()

    def _settle(self) -> None:
        if self._live_done and self._answered is not None:
            self._settle_pair(self, self._answered)
