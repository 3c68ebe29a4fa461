"""Tool calls in Llama 3.1's format: offered through the chat template, written by the model as
one JSON object `{"name": ..., "parameters": {...}}` in place of a reply, held to the tools'
schemas by the engine's grammar, and read back into calls. vLLM's `llama3_json` tool parser
reads the same objects (a test holds them equal); the grammar makes the object exact, so both
engines read it with `json.loads` alone."""

from __future__ import annotations

import json
import uuid
from typing import Any

from app.backends.protocol import Conversation
from app.backends.tools import ToolCall, Tools
from app.errors import UpstreamError

_CALL_START = "{"  # the grammar's prose cannot begin with it


def template_turns(messages: Conversation) -> list[dict[str, Any]]:
    """The turns as a chat template takes them: an assistant turn with its calls (their
    arguments as objects, as templates write them), a tool turn with the call it answers."""
    turns: list[dict[str, Any]] = []
    for m in messages:
        turn: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.tool_calls:
            turn["tool_calls"] = [_template_call(call) for call in m.tool_calls]
        if m.role == "tool":
            turn |= {"tool_call_id": m.tool_call_id, "name": m.name}
        turns.append(turn)
    return turns


def template_tools(tools: Tools | None) -> list[dict[str, Any]] | None:
    """The tools as chat templates take them (OpenAI's shape); None without tools."""
    if tools is None:
        return None
    return [
        {
            "type": "function",
            "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
        }
        for t in tools.offered
    ]


def _template_call(call: ToolCall) -> dict[str, Any]:
    try:
        arguments = json.loads(call.arguments)
    except json.JSONDecodeError:
        arguments = call.arguments
    function = {"name": call.name, "arguments": arguments}
    return {"id": call.id, "type": "function", "function": function}


class CallReader:
    """The reply as it streams: prose passes through; where tools were offered, a call is held
    until the reply ends, then read whole."""

    def __init__(self, model: str, tools_offered: bool = True) -> None:
        self._model = model
        self._held: list[str] | None = None  # a call's text, once the reply began as one
        self._started = not tools_offered  # without tools, all is prose (JSON of a schema too)

    def feed(self, text: str) -> str:
        """The prose of `text`: all of it, or none while the reply is a call."""
        if not self._started and text:
            self._started = True
            if text.startswith(_CALL_START):
                self._held = []
        if self._held is None:
            return text
        self._held.append(text)
        return ""

    def end(self, whole: bool) -> tuple[str, tuple[ToolCall, ...]]:
        """The call, read from its whole text; a call the token limit cut is no call, and its
        text is given as written (the answer's finish reason says it was cut)."""
        if self._held is None:
            return "", ()
        text = "".join(self._held)
        if not whole:
            return text, ()
        try:
            written = json.loads(text)
            call = ToolCall(
                f"call_{uuid.uuid4().hex[:24]}",
                str(written["name"]),
                json.dumps(written["parameters"], ensure_ascii=False),
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise UpstreamError(f"{self._model} wrote a tool call that is not one: {exc}") from exc
        return "", (call,)
