"""What a qlora engine is to its adapter: token ids in, decoded text out, like the custom
backend's decoder. Stop strings, pieces and usage are the adapter's business."""

from __future__ import annotations

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

    async def close(self) -> None: ...
