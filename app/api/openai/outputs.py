"""What a caller may ask of a chat completion's output besides prose: JSON of a shape
(`response_format`), or calls of its tools (`tools`, `tool_choice`, and the calls and results
that come back in later turns)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from app.api.openai.body import OpenAIBody
from app.backends.protocol import ResponseFormat
from app.backends.tools import ANY_ARGUMENTS, Tool, ToolCall


class FunctionCallIn(OpenAIBody):
    name: str
    arguments: str  # JSON text, as the model wrote it


class ToolCallIn(OpenAIBody):
    id: str
    type: Literal["function"]
    function: FunctionCallIn

    def call(self) -> ToolCall:
        return ToolCall(self.id, self.function.name, self.function.arguments)


class FunctionIn(OpenAIBody):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None  # a JSON Schema of an object; none: any object
    strict: bool | None = None  # arguments always hold to the parameters, strict or not


class ToolIn(OpenAIBody):
    type: Literal["function"]
    function: FunctionIn

    def tool(self) -> Tool:
        f = self.function
        return Tool(f.name, f.description or "", f.parameters or ANY_ARGUMENTS)


class FunctionName(OpenAIBody):
    name: str


class NamedToolChoice(OpenAIBody):
    type: Literal["function"]
    function: FunctionName


class JsonSchemaFormat(OpenAIBody):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    json_schema: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None  # every schema is enforced, strict or not


class TextFormat(OpenAIBody):
    type: Literal["text"]


class JsonObjectFormat(OpenAIBody):
    type: Literal["json_object"]


class JsonSchemaResponse(OpenAIBody):
    type: Literal["json_schema"]
    json_schema: JsonSchemaFormat


ResponseFormatIn = Annotated[
    TextFormat | JsonObjectFormat | JsonSchemaResponse, Field(discriminator="type")
]


def response_shape(
    asked: TextFormat | JsonObjectFormat | JsonSchemaResponse | None,
) -> ResponseFormat | None:
    """What the pipeline constrains the reply to; None for text."""
    if isinstance(asked, JsonSchemaResponse):
        return ResponseFormat(asked.json_schema.json_schema, asked.json_schema.name)
    return ResponseFormat() if isinstance(asked, JsonObjectFormat) else None
