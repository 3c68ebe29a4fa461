"""Tools on Gemini, through google-genai's function calling: the caller's tools become function
declarations, and where the model may answer in prose instead (`auto`) one more is declared,
`REPLY_FUNCTION`, whose arguments are the choice object (intent, confidence, reply). Gemini is
then held to calling functions (mode ANY): a call of a caller's tool goes back to the caller;
a call of REPLY_FUNCTION is read as the answer. Earlier calls and their results travel as
function-call and function-response parts."""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from app.backends.gemini.choice import Choice, asked_schema
from app.backends.gemini.upstream import malformed
from app.backends.protocol import Conversation, Message, Piece, SamplingParams
from app.backends.tools import ToolCall, Tools
from app.banking.intents import format_answer
from app.errors import InvalidRequest

if TYPE_CHECKING:
    from google.genai import types

REPLY_FUNCTION = "bankllm_reply"
_ROLES = {"user": "user", "assistant": "model", "tool": "user"}  # results are the user's side


def declared(tools: Tools, choice: Mapping[str, Any]) -> tuple[list[types.Tool], types.ToolConfig]:
    """The function declarations and the calling mode: only the tools it may call where it
    must call one; those and REPLY_FUNCTION where it may answer instead."""
    from google.genai import types

    if tools.get(REPLY_FUNCTION) is not None:
        reason = f"{REPLY_FUNCTION!r} is the name of the service's own answer: rename the tool"
        raise InvalidRequest.fields((["tools"], reason, None))
    functions = [
        types.FunctionDeclaration(
            name=t.name, description=t.description or None, parameters_json_schema=t.parameters
        )
        for t in tools.offered
    ]
    allowed = [t.name for t in tools.callable()]
    if not tools.must_call:
        functions.append(
            types.FunctionDeclaration(
                name=REPLY_FUNCTION,
                description="Answer the customer in words, naming their intent.",
                parameters_json_schema=dict(choice),
            )
        )
        allowed.append(REPLY_FUNCTION)
    mode = types.FunctionCallingConfigMode.ANY
    config = types.FunctionCallingConfig(mode=mode, allowed_function_names=allowed)
    return [types.Tool(function_declarations=functions)], types.ToolConfig(
        function_calling_config=config
    )


def answer_shape(params: SamplingParams, choice: dict[str, Any]) -> dict[str, Any]:
    """How Gemini is held to the choice: the config's fields for its JSON (the reply held to
    the caller's response format), or with tools, for function calls."""
    if params.tools is not None:
        tools, tool_config = declared(params.tools, choice)
        return {"tools": tools, "tool_config": tool_config}
    schema = asked_schema(choice, params.response_format)
    return {"response_mime_type": "application/json", "response_json_schema": schema}


def contents(messages: Conversation) -> list[types.Content]:
    """The turns as Gemini's contents (system turns aside: they join the instruction); the
    results of one turn's calls in one content, as Gemini pairs them with the calls."""
    from google.genai import types

    turns: list[types.Content] = []
    for m in messages:
        if m.role == "system":
            continue
        parts = _parts(m)
        if m.role == "tool" and turns and turns[-1].role == "user" and _answers_calls(turns[-1]):
            turns[-1].parts = [*(turns[-1].parts or []), *parts]
            continue
        turns.append(types.Content(role=_ROLES[m.role], parts=parts))
    return turns


def _parts(m: Message) -> list[types.Part]:
    from google.genai import types

    if m.role == "tool":
        response = types.FunctionResponse(
            id=m.tool_call_id, name=m.name, response={"result": m.content}
        )
        return [types.Part(function_response=response)]
    parts = [types.Part(text=m.content)] if m.content or not m.tool_calls else []
    for call in m.tool_calls:
        function_call = types.FunctionCall(id=call.id, name=call.name, args=_object(call))
        parts.append(types.Part(function_call=function_call))
    return parts


def _answers_calls(content: types.Content) -> bool:
    return any(p.function_response is not None for p in content.parts or [])


def _object(call: ToolCall) -> dict[str, Any]:
    try:
        arguments = json.loads(call.arguments)
    except json.JSONDecodeError:
        arguments = None
    return arguments if isinstance(arguments, dict) else {"arguments": call.arguments}


class CallsReader:
    """Gemini's answer where tools were offered, read as ChoiceReader reads its JSON: the words
    it wrote (rarely any: it is held to calling functions), then, at the end, its calls read
    whole: the intent line and reply of its REPLY_FUNCTION call, and the caller's tool calls
    (`calls`), each with an id."""

    def __init__(self, name: str, labels: Collection[str]) -> None:
        self._name, self._labels = name, labels
        self._text = ""
        self._made: list[types.FunctionCall] = []
        self.calls: tuple[ToolCall, ...] = ()

    def see(self, chunk: types.GenerateContentResponse) -> None:
        """Keep a chunk's function calls."""
        if chunk.candidates and (content := chunk.candidates[0].content) is not None:
            self._made += [p.function_call for p in content.parts or [] if p.function_call]

    def feed(self, text: str) -> tuple[Piece | None, str]:
        self._text += text
        return None, ""

    def end(self, whole: bool) -> tuple[Piece | None, str]:
        line: Piece | None = None
        reply = self._text
        calls: list[ToolCall] = []
        for call in self._made:
            args = dict(call.args or {})
            if call.name != REPLY_FUNCTION:
                id_ = call.id or f"call_{uuid.uuid4().hex[:24]}"
                calls.append(ToolCall(id_, call.name or "", json.dumps(args, ensure_ascii=False)))
                continue
            line, words = self._chosen(args)
            reply += words
        self.calls = tuple(calls)
        return line, reply

    def _chosen(self, args: dict[str, Any]) -> tuple[Piece, str]:
        """The intent line and reply of a REPLY_FUNCTION call, which must be the choice."""
        try:
            choice = Choice.model_validate(args)
        except ValidationError as exc:
            raise malformed(self._name, exc) from exc
        if choice.intent not in self._labels:
            raise malformed(self._name, ValueError(f"intent {choice.intent!r}"))
        return Piece(format_answer(choice.intent, ""), confidence=choice.confidence), choice.reply
