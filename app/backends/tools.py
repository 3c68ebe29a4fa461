"""Tools a caller offers a model (OpenAI's `tools` and `tool_choice`), the calls a model makes,
and what every backend shares about them: which tools a model may call, the JSON object a
call is written as, and whether its arguments hold to its function's parameters."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from app.errors import InvalidRequest

ANY_ARGUMENTS: Mapping[str, Any] = {"type": "object"}


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the caller can run: its name, what it does, and its parameters' schema."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=lambda: dict(ANY_ARGUMENTS))


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A model's call of one tool: an id the tool's result answers, and its arguments as the
    JSON text of an object."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Tools:
    """The tools offered with a request, and whether the model must call one (`required`),
    or must call `named`, or may answer in prose instead (`auto`); and whether it may call
    several at once."""

    offered: tuple[Tool, ...]
    choice: Literal["auto", "required"] = "auto"
    named: str | None = None
    parallel: bool = True  # whether the model may call more than one at a turn

    @property
    def must_call(self) -> bool:
        return self.choice == "required" or self.named is not None

    def callable(self) -> tuple[Tool, ...]:
        """The tools the model may call: the named one, or all offered."""
        return tuple(t for t in self.offered if self.named in (None, t.name))

    def get(self, name: str) -> Tool | None:
        return next((t for t in self.offered if t.name == name), None)


def parameters_problem(schema: Mapping[str, Any]) -> str | None:
    """Why a function's parameters are not a JSON Schema of an object, or None."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return f"not a JSON Schema: {exc.message}"
    if schema.get("type", "object") != "object":
        return "a function's parameters are an object"
    for ref in _references(schema):
        key, _, name = ref.removeprefix("#/").partition("/")
        if not ref.startswith("#/") or key not in ("$defs", "definitions") or "/" in name:
            return f"a $ref to {ref!r}: only references to a definition in $defs are served"
        if name not in schema.get(key, {}):
            return f"a $ref to {ref!r}, which is not defined"
    return None


def _references(schema: Any) -> list[str]:
    """Every `$ref` in a schema, at any depth."""
    if isinstance(schema, Mapping):
        found = [str(schema["$ref"])] if isinstance(schema.get("$ref"), str) else []
        return found + [ref for value in schema.values() for ref in _references(value)]
    if isinstance(schema, list):
        return [ref for value in schema for ref in _references(value)]
    return []


def arguments_problem(tool: Tool, arguments: str) -> str | None:
    """Why `arguments` do not hold to the tool's parameters, or None when they do."""
    try:
        value = json.loads(arguments)
    except json.JSONDecodeError as exc:
        return f"not JSON ({exc.msg})"
    error = next(Draft202012Validator(dict(tool.parameters)).iter_errors(value), None)
    if error is None:
        return None
    at = "/".join(str(p) for p in error.absolute_path)
    return f"{error.message}" + (f" (at {at})" if at else "")


def call_schema(tools: Tools) -> dict[str, Any]:
    """A call written as one JSON object, `{"name": ..., "parameters": {...}}` (Llama 3.1's
    format), of a tool the model may call and with that tool's parameters. The parameters'
    `$defs` move to the top, where their references point."""
    shapes: list[dict[str, Any]] = []
    definitions: dict[str, Any] = {}
    for tool in tools.callable():
        parameters = dict(tool.parameters)
        for key in ("$defs", "definitions"):
            for name, definition in parameters.pop(key, {}).items():
                if definitions.setdefault(f"{key}/{name}", definition) != definition:
                    reason = f"two tools define {key}/{name} differently: rename one"
                    raise InvalidRequest.fields((["tools"], reason, None))
        shapes.append(
            {
                "type": "object",
                "properties": {"name": {"const": tool.name}, "parameters": parameters},
                "required": ["name", "parameters"],
                "additionalProperties": False,
            }
        )
    schema: dict[str, Any] = shapes[0] if len(shapes) == 1 else {"anyOf": shapes}
    for path, definition in definitions.items():
        key, name = path.split("/", 1)
        schema.setdefault(key, {})[name] = definition
    return schema


def cannot_call_tools(model_name: str, backend: str) -> InvalidRequest:
    """The refusal of a model that cannot call tools, asked to call one."""
    return InvalidRequest.fields(
        (
            ["tool_choice"],
            f"model {model_name!r} ({backend}) cannot call tools: ask with tool_choice "
            '"auto" (it answers in prose) or "none"; docs/api.md lists the backends that can',
            None,
        )
    )
