"""One mirrored request: the live request and the shadow's answer to it, settled together."""

from __future__ import annotations

from collections.abc import Callable

from app.backends.protocol import Message, SamplingParams
from app.models.asking import ModelReply
from app.models.loaded import Loaded
from app.telemetry.record import RequestRecord


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
        settle: Callable[[Mirror, ModelReply], None],
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
        self._answered: ModelReply | None = None
        self._live_done = False

    def live_done(self) -> None:
        """The live request ended and its record is committed."""
        self._live_done = True
        self._settle()

    def answered(self, answer: ModelReply) -> None:
        self._answered = answer
        self._settle()

    def _settle(self) -> None:
        if self._live_done and self._answered is not None:
            self._settle_pair(self, self._answered)
