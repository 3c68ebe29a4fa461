"""What every backend is to the service: a small Protocol of verbs and the values they pass."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str  # the registry name, e.g. "custom"
    backend: str  # custom | qlora | gemini | echo
    version: str  # checkpoint digest, adapter revision or upstream model id


@dataclass(frozen=True, slots=True)
class SamplingParams:
    max_tokens: int = 128
    temperature: float = 0.7
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None = None  # what the provider bills for this request, when known


@dataclass(frozen=True, slots=True)
class Piece:
    """A part of the raw output; the last piece of a stream carries finish_reason and usage."""

    text: str
    finish_reason: FinishReason | None = None
    usage: Usage | None = None


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    finish_reason: FinishReason
    usage: Usage


class Adapter(Protocol):
    """A loaded model. `stream` is the primitive; `generate` is its collected form."""

    @property
    def info(self) -> ModelInfo: ...

    @property
    def problem(self) -> str | None:
        """None while the model can serve; else why not (say, the upstream rejected the key)."""
        ...

    async def load(self) -> None: ...

    async def generate(self, prompt: str, params: SamplingParams) -> Completion: ...

    def stream(self, prompt: str, params: SamplingParams) -> AsyncGenerator[Piece, None]: ...

    async def close(self) -> None: ...


async def collect(pieces: AsyncIterator[Piece]) -> Completion:
    """Join a stream of pieces into one completion."""
    parts: list[str] = []
    async for piece in pieces:
        parts.append(piece.text)
        if piece.finish_reason is not None and piece.usage is not None:
            return Completion("".join(parts), piece.finish_reason, piece.usage)
    raise RuntimeError("the stream ended without a finish piece")
