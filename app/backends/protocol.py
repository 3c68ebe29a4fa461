"""What every backend is to the service: a small Protocol of verbs and the values they pass."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Literal, Protocol, TypeVar, get_args

from pydantic import BaseModel

from app.backends.machine_time import MachinePrice
from app.backends.tools import ToolCall, Tools
from app.errors import InvalidRequest, ModelUnavailable

# a model stops or runs out of tokens; an answer that calls tools ends for their results
FinishReason = Literal["stop", "length", "tool_calls"]
Role = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[Role, ...] = get_args(Role)


@dataclass(frozen=True, slots=True)
class Message:
    """One turn of a conversation. `/generate`'s prompt is a single user turn. An assistant
    turn may carry the tool calls it made; a tool turn is one call's result, naming it."""

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None  # a tool turn's: the call it answers
    name: str | None = None  # a tool turn's: the function that was called


Conversation = Sequence[Message]
OptionsT = TypeVar("OptionsT", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A registered model: its name, its backend and that backend's validated options."""

    name: str
    backend: str  # a key of app.backends.catalog.BACKENDS
    options: BaseModel

    def options_as(self, kind: type[OptionsT]) -> OptionsT:
        """The options, as the backend's own type (the registry validated them through it)."""
        if not isinstance(self.options, kind):
            raise TypeError(f"model {self.name!r}: options are not {kind.__name__}")
        return self.options


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str  # the registry name, e.g. "custom"
    backend: str  # custom | qlora | gemini | echo
    version: str  # checkpoint digest, adapter revision or upstream model id
    # an answer whose confidence is below this is a `low_confidence` hand-off (calibrated by
    # `bankllm eval --calibrate`); None: never
    handoff_below: float | None = None
    calls_tools: bool = False  # whether the model is offered a request's tools
    gives_logprobs: bool = False  # whether it gives its reply's token log-probabilities
    machine: MachinePrice | None = None  # a local model's machine, which its answers are billed


HANDOFF_BELOW = "handoff_below"  # a checkpoint's or adapter's calibrated threshold, in its metadata


def handoff_threshold(value: object, source: str) -> float | None:
    """A model's `handoff_below` from its metadata: a probability, or None where it has none."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        message = f"{source}: handoff_below must be a number from 0 to 1, not {value!r}"
        raise ModelUnavailable(message)
    return float(value)


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """The shape a reply must have (OpenAI's `response_format`): a JSON object, valid against
    `schema` when there is one. A backend that cannot constrain its output to it refuses the
    request (400 naming `response_format`), never answers in prose."""

    schema: Mapping[str, Any] | None = None  # a JSON Schema; None: any JSON object
    name: str = "response"

    def json_schema(self) -> Mapping[str, Any]:
        return self.schema if self.schema is not None else {"type": "object"}


def cannot_give_logprobs(model: ModelInfo) -> InvalidRequest:
    return InvalidRequest.fields(
        (
            ["logprobs"],
            f"model {model.name!r} ({model.backend}) gives no log probabilities of its reply; "
            "docs/api.md lists the backends that do",
            None,
        )
    )


def cannot_format(model: ModelInfo, response_format: ResponseFormat) -> InvalidRequest:
    """The refusal of a model that cannot constrain its output to `response_format`."""
    what = "a JSON schema" if response_format.schema is not None else "JSON"
    return InvalidRequest.fields(
        (
            ["response_format"],
            f"model {model.name!r} ({model.backend}) cannot constrain its output to {what}; "
            "docs/api.md lists the backends that can",
            None,
        )
    )


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How a model samples its answer; the defaults are every API's where its request is silent
    (OpenAI's temperature excepted: its API says 1.0)."""

    max_tokens: int = 128
    temperature: float = 0.7
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    response_format: ResponseFormat | None = None  # None: text
    tools: Tools | None = None  # None: no tool may be called
    logprobs: int | None = None  # the reply's token log-probabilities, with this many others


DEFAULT_SAMPLING = SamplingParams()


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None = None  # what the provider bills for this request, when known


@dataclass(frozen=True, slots=True)
class Alternative:
    """A token the model could have written instead, with its log-probability."""

    token: str  # its text (a part of a character where it holds one: `bytes` has it whole)
    bytes: bytes
    logprob: float


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """A token of the reply, the model's log-probability of it (before temperature and top_p),
    and the most likely tokens at its place."""

    token: str
    bytes: bytes
    logprob: float
    top: tuple[Alternative, ...] = ()


@dataclass(slots=True)
class Piece:
    """A part of the raw output; the last piece of a stream carries finish_reason and usage.
    Not frozen: a stream makes one a token, and a frozen dataclass's `__init__` (a call of
    `object.__setattr__` per field) costs three times a plain one's. Nothing changes a piece."""

    text: str
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    # the probability the model gave the intent it named, on the piece that names it (None:
    # a model that gives none)
    confidence: float | None = None
    tool_calls: tuple[ToolCall, ...] = ()  # calls the model made, each whole
    logprobs: tuple[TokenLogprob, ...] = ()  # of the reply's tokens in `text`, when asked


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    finish_reason: FinishReason
    usage: Usage
    confidence: float | None = None  # the intent's, when the model gives one
    tool_calls: tuple[ToolCall, ...] = ()


class Adapter(Protocol):
    """A loaded model. Its one way to answer is `stream`; `collect` joins a stream."""

    @property
    def info(self) -> ModelInfo: ...

    @property
    def problem(self) -> str | None:
        """None while the model can serve; else why not (say, the upstream rejected the key)."""
        ...

    async def load(self) -> None: ...

    def stream(
        self, messages: Conversation, params: SamplingParams
    ) -> AsyncGenerator[Piece, None]: ...

    async def close(self) -> None: ...


async def collect(pieces: AsyncIterator[Piece]) -> Completion:
    """Join a stream of pieces into one completion, reading it to its end."""
    parts: list[str] = []
    finish: Piece | None = None
    confidence: float | None = None
    calls: list[ToolCall] = []
    async for piece in pieces:
        parts.append(piece.text)
        calls += piece.tool_calls
        if piece.confidence is not None:
            confidence = piece.confidence
        if piece.finish_reason is not None and piece.usage is not None:
            finish = piece
    if finish is None or finish.finish_reason is None or finish.usage is None:
        raise RuntimeError("the stream ended without a finish piece")
    text = "".join(parts)
    return Completion(text, finish.finish_reason, finish.usage, confidence, tuple(calls))


def user_text(messages: Conversation) -> str:
    """The latest user turn: what a single-turn model (echo) answers."""
    for message in reversed(messages):
        if message.role == "user":
            return message.content
    return ""


def earlier_user_turns(messages: Conversation) -> tuple[tuple[str, str | None], ...]:
    """The user turns before the latest, oldest first, each with the assistant's reply that
    followed it (None where none did): what a follow-up is read with."""
    users = [i for i, m in enumerate(messages) if m.role == "user"]
    return tuple((messages[i].content, _answer(messages[i + 1 : j])) for i, j in pairwise(users))


def _answer(between: Conversation) -> str | None:
    """The assistant's reply among the turns between two user turns (system turns aside)."""
    return next((m.content for m in between if m.role == "assistant"), None)
