"""Who answers a request: the active model, or, when a remote one fails before its first
piece, the next that may (FALLBACK_MODEL); and the answer's stream, read as it comes or whole."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Sequence

from app.backends.protocol import Adapter, FinishReason, Message, Piece, SamplingParams
from app.banking.pii import Policy
from app.errors import UpstreamError
from app.models.loaded import Loaded
from app.models.outbound import outbound
from app.serving.deadline import Deadline
from app.telemetry.record import RequestRecord

logger = logging.getLogger(__name__)


class ModelStream:
    """A model's stream, its first piece awaited. Leaving it closes the stream, then ends the
    lease on the model that answered when it was leased here (the fallback). A class, not an
    exit stack: one a request, on the hot path."""

    __slots__ = ("_leased", "first", "pieces")

    def __init__(
        self, pieces: AsyncGenerator[Piece, None], first: Piece | None, leased: Loaded | None
    ):
        self.pieces = pieces
        self.first = first
        self._leased = leased

    async def __aenter__(self) -> ModelStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self.pieces.aclose()
        finally:
            if self._leased is not None:
                self._leased.exit()

    async def whole(self, record: RequestRecord) -> tuple[str, FinishReason]:
        """The raw output read to its end, and why it ended; the usage and the first token's
        time go on the record. Inside the whole answer's timer: no timer a piece."""
        texts: list[str] = []
        finish: FinishReason = "length"
        piece = self.first
        while piece is not None:
            if piece.text:
                if not texts:
                    record.mark_token()
                texts.append(piece.text)
            if piece.usage is not None and piece.finish_reason is not None:
                record.usage, finish = piece.usage, piece.finish_reason
            # the next piece, if any, by `async for`'s turn: `anext(pieces, None)` costs a third
            # more (an awaitable made for each piece)
            piece = None
            async for piece in self.pieces:  # noqa: B007 (the loop takes one)
                break
        return "".join(texts), finish


async def open_answer(
    answering: Sequence[Adapter | Loaded],
    conversation: tuple[Message, ...],
    params: SamplingParams,
    policy: Policy,
    deadline: Deadline,
    record: RequestRecord,
) -> ModelStream:
    """Start a stream and await its first piece: the first of `answering` (the active model,
    held), or, when a remote model fails before it, the next one's (a loaded one is leased
    until the answer is left). Each model gets the turns CLOUD_PII_POLICY lets it have."""
    first = answering[0]
    active = first.adapter.info if isinstance(first, Loaded) else first.info
    failure: UpstreamError | None = None
    for candidate in answering:
        leased = candidate if isinstance(candidate, Loaded) else None
        adapter = candidate.adapter if isinstance(candidate, Loaded) else candidate
        if leased is not None:
            leased.enter()  # held until the answer is left
        try:
            if failure is None:
                record.serve_with(adapter.info)
            else:
                name = adapter.info.name
                logger.warning("%s failed (%s); %s answers", active.name, failure.type, name)
                record.fell_back(active, failure, adapter.info)
            pieces = adapter.stream(*outbound(conversation, params, adapter.info, policy, record))
            try:
                return ModelStream(pieces, await deadline.bound(anext(pieces, None)), leased)
            except BaseException:
                await pieces.aclose()
                raise
        except UpstreamError as exc:
            failure = exc
            if leased is not None:
                leased.exit()
        except BaseException:
            if leased is not None:
                leased.exit()
            raise
    assert failure is not None
    raise failure
