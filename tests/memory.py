"""An in-memory backend for tests of the request path: it answers a fixed reply word by word,
and a test can hold it before its first word, make it fail, and see what it was sent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict

from app.backends.catalog import Backend
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
from app.banking.intents import IntentSet
from app.errors import ServiceError

REPLY = "intent: card_arrival\nYour card is on its way."


class MemoryOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    reply: str = REPLY
    loads: bool = True  # False: load() fails, as a model with no weights would
    formats: bool = True  # False: a response_format is refused, as echo refuses it


@dataclass
class Memory:
    """What the tests control and observe, shared by every memory adapter of a test."""

    adapters: dict[str, list[MemoryAdapter]] = field(default_factory=dict)  # by model, in order
    hold: dict[str, asyncio.Event] = field(default_factory=dict)  # model -> released when set
    failures: dict[str, list[ServiceError]] = field(default_factory=dict)  # raised before a word
    started: dict[str, asyncio.Event] = field(default_factory=dict)  # set by a stream's start
    load_failures: dict[str, int] = field(default_factory=dict)  # model -> loads that fail

    def latest(self, name: str) -> MemoryAdapter:
        return self.adapters[name][-1]

    def backends(self) -> dict[str, Backend]:
        """`memory` (local) and `memory-remote` (its prompts leave the process)."""

        def create(spec: ModelSpec, intents: IntentSet) -> MemoryAdapter:
            adapter = MemoryAdapter(spec, self)
            self.adapters.setdefault(spec.name, []).append(adapter)
            return adapter

        return {
            "memory": Backend(MemoryOptions, create, lambda s: None, lambda s: "mem-1"),
            "memory-remote": Backend(
                MemoryOptions, create, lambda s: None, lambda s: "mem-1", remote=True
            ),
        }


class MemoryAdapter:
    def __init__(self, spec: ModelSpec, memory: Memory):
        self._options = spec.options_as(MemoryOptions)
        self._memory = memory
        self._info = ModelInfo(spec.name, spec.backend, "mem-1")
        self.received: list[Conversation] = []
        self.endings: list[str] = []  # per stream: "exhausted" or "closed"
        self.closed = False

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def problem(self) -> str | None:
        return None

    async def load(self) -> None:
        failures = self._memory.load_failures.get(self._info.name, 0)
        if failures:
            self._memory.load_failures[self._info.name] = failures - 1
            raise RuntimeError("the disk is not mounted yet")
        if not self._options.loads:
            raise RuntimeError("no weights")

    async def stream(
        self, messages: Conversation, params: SamplingParams
    ) -> AsyncGenerator[Piece, None]:
        name = self._info.name
        if params.response_format is not None and not self._options.formats:
            raise cannot_format(self._info, params.response_format)
        self.received.append(messages)
        if (started := self._memory.started.get(name)) is not None:
            started.set()
        words = self._options.reply.split(" ")
        count = min(len(words), params.max_tokens)
        finish: FinishReason = "length" if count < len(words) else "stop"
        try:
            if (hold := self._memory.hold.get(name)) is not None:
                await hold.wait()
            if failures := self._memory.failures.get(name):
                raise failures.pop(0)
            for i, word in enumerate(words[:count]):
                yield Piece(word if i == 0 else f" {word}")
            yield Piece("", finish, Usage(sum(len(m.content) for m in messages), count))
        except (GeneratorExit, asyncio.CancelledError):
            self.endings.append("closed")
            raise
        self.endings.append("exhausted")

    async def close(self) -> None:
        self.closed = True
