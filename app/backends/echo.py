"""`echo`: a fixed reply and no model, to measure the service's own overhead."""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator

from pydantic import BaseModel, ConfigDict

from app.backends.protocol import (
    Conversation,
    FinishReason,
    ModelInfo,
    ModelSpec,
    Piece,
    SamplingParams,
    Usage,
    cannot_format,
)
from app.backends.stops import StopScanner

REPLY = "intent: card_arrival\nThis is the echo model. It answers the same words to every prompt."
VERSION = "fixed-reply-1"


class EchoOptions(BaseModel):
    """The echo backend takes no options."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class EchoAdapter:
    def __init__(self, spec: ModelSpec):
        self._info = ModelInfo(spec.name, spec.backend, VERSION)
        self._tokens = re.findall(r"\S+\s*", REPLY)  # words with their trailing space
        self._pieces = [Piece(token) for token in self._tokens]  # made once, never changed

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def problem(self) -> str | None:
        return None

    async def load(self) -> None:
        return None

    async def stream(
        self, messages: Conversation, params: SamplingParams
    ) -> AsyncGenerator[Piece, None]:
        # No await between tokens, and no work a token beyond the scanner's: echo measures
        # the service, not a model.
        if params.response_format is not None:
            raise cannot_format(self.info, params.response_format)
        tokens = self._tokens[: params.max_tokens]
        stopped = False
        if not params.stop:
            for piece in self._pieces[: len(tokens)]:
                yield piece
            count = len(tokens)
        else:
            scanner = StopScanner(params.stop)
            count = 0
            for token in tokens:
                count += 1
                if text := scanner.feed(token):
                    yield Piece(text)
                if stopped := scanner.stopped:
                    break
            if tail := scanner.flush():
                yield Piece(tail)
        cut = len(tokens) < len(self._tokens) and not stopped
        finish: FinishReason = "length" if cut else "stop"
        words = sum(len(m.content.split()) for m in messages)
        yield Piece("", finish, Usage(words, count))

    async def close(self) -> None:
        return None
