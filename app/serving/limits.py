"""The one check of a request against the service's limits, for every caller: `/generate`, the
Python API and the OpenAI routes. Its errors are 4xx that name each field."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any

from app.backends.protocol import DEFAULT_SAMPLING, ROLES, Message, ResponseFormat, SamplingParams
from app.backends.tools import Tools, parameters_problem
from app.banking.intents import IntentSet
from app.errors import Forbidden, InvalidRequest, ModelNotFound, Problem, lone_surrogate
from app.serving.results import RequestContext
from app.settings import Settings
from app.telemetry.record import RequestRecord

MAX_STOPS = 4
MAX_EARLIER_TURNS = 8  # a conversation's earlier customer turns that /generate takes
# A stop string is held back and searched on every delta: its length bounds that work.
MAX_STOP_CHARS = 64
MAX_TOP_LOGPROBS = 20  # alternatives a token's log-probability may come with (OpenAI's most)
MAX_TOOLS = 64  # tools one request may offer; each is read by the model with every turn
_NO_SYSTEM_TURNS = (
    "user or assistant: this service takes no system (or developer) turns from callers "
    "(ALLOW_SYSTEM_TURNS=false)"
)


class Limits:
    def __init__(self, settings: Settings, models: Collection[str], intents: IntentSet):
        self.max_prompt_chars = settings.max_prompt_chars
        self.max_tokens = settings.max_tokens_limit
        self.system_turns = settings.allow_system_turns
        self._models = models
        self._intents = intents

    def checked(
        self,
        prompt: str | None,
        earlier: Sequence[str],
        messages: Sequence[Message] | None,
        context: RequestContext,
        options: dict[str, Any],
        record: RequestRecord,
    ) -> tuple[tuple[Message, ...], SamplingParams]:
        """A request's turns and sampling, checked; its label (if it may give one) recorded."""
        if context.label is not None:
            record.label = self._known_label(context)
        if context.model is not None and context.model not in self._models:
            raise ModelNotFound(
                f"no model named '{context.model}'", {"models": sorted(self._models)}
            )
        return self.conversation(prompt, messages, earlier), self.params(**options)

    def _known_label(self, context: RequestContext) -> str:
        assert context.label is not None
        if not context.may_label:
            raise Forbidden(
                "`label` counts toward the accuracy that admins switch models on: only an "
                "evaluation key (EVAL_API_KEYS) or the admin key may send it"
            )
        if context.label not in self._intents.answer_labels:
            raise InvalidRequest(
                "`label` must name one of the service's intents (app/banking/data/intents.json) "
                "or out_of_scope",
                {"label": "not an intent"},
            )
        return context.label

    def conversation(
        self, prompt: str | None, messages: Sequence[Message] | None, earlier: Sequence[str] = ()
    ) -> tuple[Message, ...]:
        """The turns to answer: `prompt` as a user turn after the `earlier` ones, or `messages`
        as given."""
        if (prompt is None) == (messages is None):
            raise InvalidRequest.fields(([], "give either a prompt or messages", None))
        if earlier and prompt is None:
            raise InvalidRequest.fields(
                (["earlier"], "goes with a prompt, not with messages", None)
            )
        if prompt is not None:
            self._check_length(len(prompt), ["prompt"])
            _check_text(prompt, ["prompt"])
            _check_words(prompt, ["prompt"])
            return (*self._earlier(earlier, len(prompt)), Message("user", prompt))
        assert messages is not None
        if not any(m.role == "user" for m in messages):
            raise InvalidRequest.fields((["messages"], "needs a message with the role user", None))
        for i, message in enumerate(messages):
            if message.role not in ROLES:
                raise InvalidRequest.fields(
                    (["messages", i, "role"], f"one of {', '.join(ROLES)}", message.role)
                )
            if message.role == "system" and not self.system_turns:
                # the bank's system prompt alone instructs the model: a caller's would speak
                # with its authority
                raise InvalidRequest.fields(
                    (["messages", i, "role"], _NO_SYSTEM_TURNS, message.role)
                )
        chars = sum(len(m.content) + sum(len(c.arguments) for c in m.tool_calls) for m in messages)
        self._check_length(chars, ["messages"])
        for i, message in enumerate(messages):
            _check_text(message.content, ["messages", i, "content"])
            _check_text(message.tool_call_id or "", ["messages", i, "tool_call_id"])
            for j, call in enumerate(message.tool_calls):
                at: list[str | int] = ["messages", i, "tool_calls", j]
                for name, text in (("id", call.id), ("name", call.name)):
                    _check_text(text, [*at, name])
                _check_arguments(call.arguments, [*at, "function", "arguments"])
        for i, message in enumerate(messages):
            if message.role == "tool" and message.name is None:
                reason = "answers no tool call of an earlier assistant turn"
                raise InvalidRequest.fields(
                    (["messages", i, "tool_call_id"], reason, message.tool_call_id)
                )
        last = max(i for i, m in enumerate(messages) if m.role == "user")
        _check_words(messages[last].content, ["messages", last, "content"])
        return tuple(messages)

    def _earlier(self, earlier: Sequence[str], prompt_chars: int) -> list[Message]:
        """The customer's earlier turns, each text, all of them and the prompt within the
        prompt's limit."""
        if len(earlier) > MAX_EARLIER_TURNS:
            raise InvalidRequest.fields(
                (["earlier"], f"at most {MAX_EARLIER_TURNS} turns", len(earlier))
            )
        for i, text in enumerate(earlier):
            _check_text(text, ["earlier", i])
            _check_words(text, ["earlier", i])
        if (
            earlier
            and not 1 <= (n := prompt_chars + sum(map(len, earlier))) <= self.max_prompt_chars
        ):
            message = f"with the prompt, must be 1 to {self.max_prompt_chars} characters, got {n}"
            raise InvalidRequest.fields((["earlier"], message, n), kind="string_length")
        return [Message("user", text) for text in earlier]

    def params(
        self,
        max_tokens: int = DEFAULT_SAMPLING.max_tokens,
        temperature: float = DEFAULT_SAMPLING.temperature,
        top_p: float = DEFAULT_SAMPLING.top_p,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
        response_format: ResponseFormat | None = None,
        tools: Tools | None = None,
        logprobs: int | None = None,
    ) -> SamplingParams:
        """The request's options, checked against the configured limits."""
        limit = self.max_tokens
        problems: list[Problem] = []
        if not 1 <= max_tokens <= limit:
            problems.append((["max_tokens"], f"must be between 1 and {limit}", max_tokens))
        if not 0.0 <= temperature <= 2.0:
            problems.append((["temperature"], "must be between 0 and 2", temperature))
        if not 0.0 < top_p <= 1.0:
            problems.append((["top_p"], "must be greater than 0 and at most 1", top_p))
        if seed is not None and not -(2**63) <= seed < 2**63:
            problems.append((["seed"], "must be a 64-bit signed integer", seed))
        if stop is not None and (len(stop) > MAX_STOPS or not all(stop)):
            problems.append((["stop"], f"at most {MAX_STOPS} non-empty strings", list(stop)))
        for i, text in enumerate(stop or ()):
            if len(text) > MAX_STOP_CHARS:
                problems.append((["stop", i], f"at most {MAX_STOP_CHARS} characters", len(text)))
            elif (at := lone_surrogate(text)) is not None:
                problems.append((["stop", i], _NOT_TEXT.format(at=at), text))
        if logprobs is not None and not 0 <= logprobs <= MAX_TOP_LOGPROBS:
            problems.append((["top_logprobs"], f"0 to {MAX_TOP_LOGPROBS}", logprobs))
        if tools is not None:
            problems += self._tool_problems(tools, response_format)
        if problems:
            raise InvalidRequest.fields(*problems)
        stops = tuple(stop or ())
        return SamplingParams(
            max_tokens, temperature, top_p, stops, seed, response_format, tools, logprobs
        )

    def _tool_problems(self, tools: Tools, response_format: ResponseFormat | None) -> list[Problem]:
        """Tools a model can be offered: at most MAX_TOOLS, named once each, their parameters
        JSON Schemas of objects, their definitions within the prompt's limit (a model reads
        every one); a tool the choice names is offered; JSON output is asked without them."""
        if not tools.offered:
            return [(["tool_choice"], "names a tool to call, but no tools are offered", None)]
        if len(tools.offered) > MAX_TOOLS:
            return [(["tools"], f"at most {MAX_TOOLS} tools", len(tools.offered))]
        problems: list[Problem] = []
        names = [t.name for t in tools.offered]
        if len(set(names)) < len(names):
            problems.append((["tools"], "each tool's name once", names))
        if tools.named is not None and tools.get(tools.named) is None:
            problems.append((["tool_choice"], "names no tool offered", tools.named))
        for i, tool in enumerate(tools.offered):
            written = json.dumps([tool.name, tool.description, tool.parameters], ensure_ascii=False)
            if (at := lone_surrogate(written)) is not None:
                problems.append((["tools", i, "function"], _NOT_TEXT.format(at=at), None))
            elif (problem := parameters_problem(tool.parameters)) is not None:
                problems.append((["tools", i, "function", "parameters"], problem, None))
        size = sum(len(t.name) + len(t.description) + len(str(t.parameters)) for t in tools.offered)
        if size > self.max_prompt_chars:
            problems.append((["tools"], f"at most {self.max_prompt_chars} characters in all", size))
        if response_format is not None:
            reason = "not served with tools: ask for JSON, or offer tools (or tool_choice none)"
            problems.append((["response_format"], reason, None))
        return problems

    def _check_length(self, n: int, loc: list[str | int]) -> None:
        limit = self.max_prompt_chars
        if not 1 <= n <= limit:
            message = f"must be 1 to {limit} characters, got {n}"
            raise InvalidRequest.fields((loc, message, n), kind="string_length")


_NOT_TEXT = "is not Unicode text: a lone surrogate at character {at}"


def _check_words(text: str, loc: list[str | int]) -> None:
    """A question a model can answer: white space alone asks nothing (and a model would
    answer it with a guess)."""
    if not text.strip():
        raise InvalidRequest.fields((loc, "must contain more than white space", text))


def _check_arguments(arguments: str, loc: list[str | int]) -> None:
    """A call's arguments: Unicode text holding one JSON object (nested within reason)."""
    _check_text(arguments, loc)
    try:
        value = json.loads(arguments)
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, dict):
        raise InvalidRequest.fields((loc, "must be the JSON text of an object", None))


def _check_text(text: str, loc: list[str | int]) -> None:
    """Text a model can be given: a lone surrogate (JSON's `\\ud800`) is no character."""
    if (at := lone_surrogate(text)) is not None:
        raise InvalidRequest.fields((loc, _NOT_TEXT.format(at=at), text), kind="string_unicode")
