"""What a qlora engine is to its adapter: token ids in, decoded text out, like the custom
backend's decoder. Stop strings, pieces and usage are the adapter's business."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from app.backends.token_scores import Scored


@dataclass(frozen=True, slots=True)
class Sampling:
    max_tokens: int
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    seed: int | None = None
    json_schema: Mapping[str, Any] | None = None  # the reply is JSON of this schema
    lark: str | None = None  # or the reply holds to this Lark grammar (a tool call or prose)
    logprobs: int | None = None  # score each token, with this many alternatives

    @property
    def constrained(self) -> bool:
        return self.json_schema is not None or self.lark is not None


@dataclass(frozen=True, slots=True)
class Delta:
    """Newly decoded text and the tokens generated so far; the last one has `finish` set."""

    text: str
    tokens: int
    finish: Literal["stop", "length"] | None = None  # the end of sequence, or max_tokens
    scored: tuple[Scored, ...] = ()  # the new tokens' scores, when asked


class EngineDied(Exception):
    """The engine can generate no more (its process died): only a new engine serves again."""


class Engine(Protocol):
    def stream(self, ids: list[int], sampling: Sampling) -> AsyncGenerator[Delta, None]:
        """Decode after `ids`; closing the generator early stops the sequence in the engine."""
        ...

    async def choose(self, ids: list[int], continuations: list[list[int]]) -> tuple[int, float]:
        """A decided label, never sampled: greedy down the continuations' tree after `ids`, a
        token a step among those that keep to one (`following`), until one is `spelled`. The
        continuation chosen, and the probability the model gives it (its tokens', multiplied,
        each among all tokens). Every engine takes these steps, so all choose the same."""
        ...

    async def close(self) -> None: ...


def spelled(path: list[int], continuations: list[list[int]]) -> int | None:
    """The continuation `path` has spelled out whole, if any."""
    return next((i for i, c in enumerate(continuations) if c == path), None)


def following(path: list[int], continuations: list[list[int]]) -> list[int]:
    """The tokens that keep `path` to a continuation."""
    return sorted({c[len(path)] for c in continuations if c[: len(path)] == path})
