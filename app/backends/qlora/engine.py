"""What a qlora engine is to its adapter: token ids in, decoded text out, like the custom
backend's decoder. Stop strings, pieces and usage are the adapter's business."""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Literal, Protocol


@dataclass(frozen=True, slots=True)
class Sampling:
    max_tokens: int
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class Delta:
    """Newly decoded text and the tokens generated so far; the last one has `finish` set."""

    text: str
    tokens: int
    finish: Literal["stop", "length"] | None = None  # the end of sequence, or max_tokens


class EngineDied(Exception):
    """The engine can generate no more (its process died): only a new engine serves again."""


class Engine(Protocol):
    def stream(self, ids: list[int], sampling: Sampling) -> AsyncGenerator[Delta, None]:
        """Decode after `ids`; closing the generator early stops the sequence in the engine."""
        ...

    async def next_token(self, ids: list[int], allowed: list[int]) -> tuple[int, float]:
        """The most likely of the `allowed` tokens after `ids`, and its log-probability as the
        model gives it (among all tokens): a step of a decided label, never sampled."""
        ...

    async def close(self) -> None: ...


async def choose(
    engine: Engine, ids: list[int], continuations: list[list[int]]
) -> tuple[int, float]:
    """Greedy down the continuations' tree, a token a step among those that keep to one: the
    continuation chosen, and the probability the model gives it (its tokens', multiplied).
    The same steps on every engine, so both choose the same label."""
    path: list[int] = []
    logprob = 0.0
    while (index := next((i for i, c in enumerate(continuations) if c == path), None)) is None:
        following = sorted({c[len(path)] for c in continuations if c[: len(path)] == path})
        token, step = await engine.next_token([*ids, *path], following)
        path.append(token)
        logprob += step
    return index, math.exp(logprob)
