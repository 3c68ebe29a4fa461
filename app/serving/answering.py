"""Who answers a request: the active model, or, when a remote one fails before its first
piece, the next that may (FALLBACK_MODEL); and the answer's stream, read as it comes or whole."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Sequence

from app.backends.protocol import (
    Adapter,
    FinishReason,
    Message,
    Piece,
    SamplingParams,
    TokenLogprob,
)
from app.backends.tools import ToolCall, Tools, arguments_problem
from app.banking.intents import IntentSplitter
from app.banking.pii import Policy
from app.errors import InvalidRequest, UpstreamError
from app.models.loaded import Loaded
from app.models.outbound import outbound
from app.serving.deadline import Deadline
from app.telemetry.record import RequestRecord

logger = logging.getLogger(__name__)


class ModelStream:
    """A model's stream, its first piece awaited. Leaving it closes the stream, then ends the
    lease on the model that answered when it was leased here (the fallback)."""

    def __init__(
        self,
        pieces: AsyncGenerator[Piece, None],
        first: Piece | None,
        leased: Loaded | None,
        tools: Tools | None = None,
    ):
        self.pieces = pieces
        self.first = first
        self.finish: FinishReason = "length"  # why it ended, once read to its end
        self.tool_calls: list[ToolCall] = []  # the model's, as it made them
        self.logprobs: list[TokenLogprob] = []  # of the reply's tokens, when asked
        self._leased = leased
        self._tools = tools  # those the model was offered

    async def __aenter__(self) -> ModelStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self.pieces.aclose()
        finally:
            if self._leased is not None:
                self._leased.exit()

    async def texts(self, record: RequestRecord, deadline: Deadline) -> AsyncIterator[str]:
        """The raw output as it comes, each wait within the deadline."""
        piece = self.first
        while piece is not None:
            if text := self._take(piece, record):
                yield text
            piece = await deadline.bound(anext(self.pieces, None))

    async def whole(self, record: RequestRecord) -> str:
        """The raw output read to its end in one loop (the caller bounds the whole wait)."""
        texts = [self._take(self.first, record)] if self.first is not None else []
        async for piece in self.pieces:
            texts.append(self._take(piece, record))
        return "".join(texts)

    def _take(self, piece: Piece, record: RequestRecord) -> str:
        """One piece: the first token's time, the intent's confidence and the usage go on the
        record, and why the stream ended on `finish`."""
        if piece.text:
            record.mark_token()
        if piece.usage is not None and piece.finish_reason is not None:
            record.model_done(piece.usage)
            self.finish = piece.finish_reason
        if piece.confidence is not None:
            record.confidence = piece.confidence
        self.logprobs += piece.logprobs
        self.tool_calls += piece.tool_calls
        return piece.text

    def checked_calls(self, record: RequestRecord) -> tuple[ToolCall, ...]:
        """The model's calls, each one the caller may run (every backend's are checked here,
        constrained or not); more than one only where the caller takes parallel calls."""
        calls = tuple(_checked_call(call, self._tools, record) for call in self.tool_calls)
        if len(calls) > 1 and self._tools is not None and not self._tools.parallel:
            name = record.model.name if record.model is not None else "the model"
            raise UpstreamError(f"{name} called {len(calls)} tools; parallel_tool_calls is false")
        return calls


def _checked_call(call: ToolCall, tools: Tools | None, record: RequestRecord) -> ToolCall:
    """A call the caller may run: of a tool it offered, with arguments that hold to that
    tool's parameters (every backend's calls are checked here, constrained or not)."""
    name = record.model.name if record.model is not None else "the model"
    tool = tools.get(call.name) if tools is not None else None
    if tool is None:
        raise UpstreamError(f"{name} called {call.name!r}, a tool it was not offered")
    if (problem := arguments_problem(tool, call.arguments)) is not None:
        message = f"{name} called {call.name!r} with arguments its parameters refuse: {problem}"
        raise UpstreamError(message)
    return call


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
            sent = outbound(conversation, params, adapter.info, policy, record)
            if params.tools is not None:  # what the model that answers saw
                record.tools = "offered" if sent[1].tools is not None else "not_offered"
            pieces = adapter.stream(*sent)
            try:
                opening = await deadline.bound(anext(pieces, None))
                return ModelStream(pieces, opening, leased, sent[1].tools)
            except BaseException:
                await pieces.aclose()
                raise
        except UpstreamError as exc:
            failure = exc
            if leased is not None:
                leased.exit()
        except BaseException as exc:
            if leased is not None:
                leased.exit()
            if failure is not None and isinstance(exc, InvalidRequest):
                # a fallback that cannot take this request (its response_format, say): the
                # caller is told of the upstream's failure, not of a mistake of its own
                raise failure from exc
            raise
    assert failure is not None
    raise failure


class ReplyReading:
    """The reply read from a model's stream, delta by delta or whole, without its intent line;
    with the log-probabilities of its tokens as far as its text has gone, when they were asked
    for (a stop string's cut, or text held back, leaves the tokens past it out; a hand-off,
    whose text is the approved one, has none)."""

    def __init__(
        self,
        answer: ModelStream,
        splitter: IntentSplitter,
        record: RequestRecord,
        scored: bool,
    ) -> None:
        self._answer, self._splitter, self._record = answer, splitter, record
        self._scored = scored
        self._parts: list[str] = []
        self._bytes = 0  # of the reply so far
        self._given = 0  # log-probabilities given out
        self._given_bytes = 0  # the bytes of their tokens

    @property
    def text(self) -> str:
        return "".join(self._parts)

    async def deltas(
        self, deadline: Deadline
    ) -> AsyncIterator[tuple[str, tuple[TokenLogprob, ...] | None]]:
        """Each delta of the reply as the model writes it, with its tokens' log-probabilities."""
        async for text in self._answer.texts(self._record, deadline):
            if delta := self._splitter.feed(text, self._record.confidence):
                yield delta, self._taken(delta)
        if tail := self._splitter.finish():
            yield tail, self._taken(tail)

    async def whole(self) -> None:
        """The reply split from the whole output: the same split as the deltas' (a test holds
        the two equal)."""
        whole = await self._answer.whole(self._record)
        self._taken(self._splitter.feed(whole, self._record.confidence) + self._splitter.finish())

    def _taken(self, delta: str) -> tuple[TokenLogprob, ...] | None:
        """Take a delta of the reply; the log-probabilities of the tokens it completes."""
        self._parts.append(delta)
        self._bytes += len(delta.encode())
        if not self._scored or self._splitter.handoff is not None:
            return None
        entries, start = self._answer.logprobs, self._given
        while self._given < len(entries):
            size = len(entries[self._given].bytes)
            if self._given_bytes + size > self._bytes:
                break
            self._given += 1
            self._given_bytes += size
        return tuple(entries[start : self._given])

    def logprobs(self) -> tuple[TokenLogprob, ...] | None:
        """Every log-probability given, once the reply is read."""
        if not self._scored or self._splitter.handoff is not None:
            return None
        return tuple(self._answer.logprobs[: self._given])
