"""The one check of a request against the service's limits, for every caller: `/generate`, the
Python API and the OpenAI routes. Its errors are 422s that name each field."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.adapters.protocol import Message, SamplingParams
from app.errors import InvalidRequest
from app.settings import Settings

MAX_STOPS = 4
ROLES = ("system", "user", "assistant")


class Limits:
    def __init__(self, settings: Settings):
        self.max_prompt_chars = settings.max_prompt_chars
        self.max_tokens = settings.max_tokens_limit

    def conversation(
        self, prompt: str | None, messages: Sequence[Message] | None
    ) -> tuple[Message, ...]:
        """The turns to answer: `prompt` as one user turn, or `messages` as given."""
        if (prompt is None) == (messages is None):
            raise InvalidRequest("give either a prompt or messages", [_problem(["body"], "one of")])
        if prompt is not None:
            self._check_length(len(prompt), ["body", "prompt"], "prompt")
            return (Message("user", prompt),)
        assert messages is not None
        if not any(m.role == "user" for m in messages):
            raise InvalidRequest(
                "messages: at least one message with the role user",
                [_problem(["body", "messages"], "needs a user message", len(messages))],
            )
        for i, message in enumerate(messages):
            if message.role not in ROLES:
                loc: list[str | int] = ["body", "messages", i, "role"]
                raise InvalidRequest(
                    f"messages.{i}.role: one of {', '.join(ROLES)}",
                    [_problem(loc, f"one of {', '.join(ROLES)}", message.role)],
                )
        self._check_length(sum(len(m.content) for m in messages), ["body", "messages"], "messages")
        return tuple(messages)

    def params(
        self,
        max_tokens: int = 128,
        temperature: float = 0.7,
        top_p: float = 1.0,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
    ) -> SamplingParams:
        """The request's options, checked against the configured limits."""
        limit = self.max_tokens
        errors: list[tuple[str, str, Any]] = []
        if not 1 <= max_tokens <= limit:
            errors.append(("max_tokens", f"must be between 1 and {limit}", max_tokens))
        if not 0.0 <= temperature <= 2.0:
            errors.append(("temperature", "must be between 0 and 2", temperature))
        if not 0.0 < top_p <= 1.0:
            errors.append(("top_p", "must be greater than 0 and at most 1", top_p))
        if stop is not None and (len(stop) > MAX_STOPS or not all(stop)):
            errors.append(("stop", f"at most {MAX_STOPS} non-empty strings", list(stop)))
        if errors:
            raise InvalidRequest(
                "; ".join(f"{f}: {m}" for f, m, _ in errors),
                [_problem(["body", f], m, v) for f, m, v in errors],
            )
        return SamplingParams(max_tokens, temperature, top_p, tuple(stop or ()), seed)

    def _check_length(self, n: int, loc: list[str | int], name: str) -> None:
        limit = self.max_prompt_chars
        if not 1 <= n <= limit:
            raise InvalidRequest(
                f"{name}: must be 1 to {limit} characters, got {n}",
                [{"loc": loc, "msg": f"length must be 1..{limit}", "input_length": n}],
            )


def _problem(loc: list[str | int], msg: str, value: Any = None) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "input": value}
