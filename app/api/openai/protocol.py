"""OpenAI's request shapes as we accept them, and what they mean to the pipeline. A field we do
not serve is refused with 400 naming it, never ignored (a caller who asks for JSON, tools or a
penalty must not get prose and believe it was honoured); fields that change nothing here are
taken, some only at their neutral values (`_only`). Every optional field takes null."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    field_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from app.api.schemas import JsonInt
from app.backends.protocol import DEFAULT_SAMPLING, Message, ResponseFormat, Role

OPENAI_TEMPERATURE = 1.0  # OpenAI's default; `/generate` keeps ours
_OPENAI_ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",  # OpenAI's newer name for the system turn
    "user": "user",
    "assistant": "assistant",
}


_NON_EMPTY = {"type": "string", "minLength": 1}
T = TypeVar("T")


@dataclass(frozen=True)
class _Only:
    """A field taken only at values that change nothing here (null always does): any other is
    refused, and the API's document lists the values it takes."""

    neutral: tuple[Any, ...]

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {**handler(schema), "enum": [*self.neutral, None]}

    def _check(self, value: T) -> T:
        if value is not None and value not in self.neutral:
            named = " or ".join(json.dumps(v) for v in self.neutral) or "null"
            raise ValueError(f"not served: only {named} (or null), which changes nothing here")
        return value


def _only(*neutral: object) -> _Only:
    return _Only(neutral)


class _OpenAIBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # unknown fields refused, types exact


class ContentPart(_OpenAIBody):
    type: str = Field(json_schema_extra={"const": "text"})
    text: str  # a part without text is refused


class ChatMessageIn(_OpenAIBody):
    role: str = Field(
        description="system and developer turns only where the deployment sets "
        "ALLOW_SYSTEM_TURNS=true (400 otherwise): the bank's system prompt instructs the model",
        json_schema_extra={"enum": list(_OPENAI_ROLES)},
    )
    content: str | list[ContentPart] | None = None
    name: str | None = None  # a participant's name: a label, it changes no answer
    # what an assistant turn passed back as the SDK returned it may carry, empty
    refusal: str | None = None
    tool_calls: Annotated[list[dict[str, Any]] | None, _only([])] = None
    function_call: Annotated[dict[str, Any] | None, _only()] = None
    audio: Annotated[dict[str, Any] | None, _only()] = None
    annotations: Annotated[list[dict[str, Any]] | None, _only([])] = None

    @field_validator("role")
    @classmethod
    def _served_role(cls, role: str) -> str:
        if role not in _OPENAI_ROLES:
            raise ValueError(f"one of {', '.join(_OPENAI_ROLES)} (no tool turns)")
        return role

    @field_validator("content")
    @classmethod
    def _text_only(cls, content: Any) -> Any:
        if isinstance(content, list) and any(p.type != "text" or p.text is None for p in content):
            raise ValueError("only text parts are served")
        return content

    def message(self) -> Message:
        content = self.content
        if isinstance(content, list):
            content = "".join(part.text or "" for part in content)
        return Message(_OPENAI_ROLES[self.role], content or "")


class JsonSchemaFormat(_OpenAIBody):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    json_schema: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None  # every schema is enforced, strict or not


class TextFormat(_OpenAIBody):
    type: Literal["text"]


class JsonObjectFormat(_OpenAIBody):
    type: Literal["json_object"]


class JsonSchemaResponse(_OpenAIBody):
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


class StreamOptions(_OpenAIBody):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None  # padding against side channels: none is sent


class _Sampling(_OpenAIBody):
    model: str | None = None
    max_tokens: JsonInt | None = Field(None, json_schema_extra={"minimum": 1})
    temperature: float | None = Field(None, json_schema_extra={"minimum": 0, "maximum": 2})
    top_p: float | None = Field(None, json_schema_extra={"exclusiveMinimum": 0, "maximum": 1})
    stop: str | list[str] | None = Field(
        None,
        json_schema_extra={
            "minLength": 1,
            "maxLength": 64,
            "maxItems": 4,
            "items": {"type": "string", "minLength": 1, "maxLength": 64},
        },
    )
    seed: JsonInt | None = None
    n: JsonInt | None = Field(None, json_schema_extra={"enum": [1, None]})
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    user: str | None = None
    logprobs: bool | JsonInt | None = Field(None, json_schema_extra={"enum": [False, 0, None]})
    top_logprobs: JsonInt | None = Field(None, json_schema_extra={"enum": [0, None]})
    # Taken at the values that change nothing; any other is refused, naming the field.
    frequency_penalty: Annotated[float | None, _only(0.0)] = None
    presence_penalty: Annotated[float | None, _only(0.0)] = None
    logit_bias: Annotated[dict[str, float] | None, _only({})] = None
    store: Annotated[bool | None, _only(False)] = None  # no completion is kept for later
    service_tier: Annotated[str | None, _only("auto", "default")] = None
    ignore_eos: Annotated[bool | None, _only(False)] = None  # vLLM's; benchmarks send it
    # Hints and labels for the caller's own bookkeeping: they change no answer.
    metadata: dict[str, str] | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None

    @field_validator("logprobs", "top_logprobs")
    @classmethod
    def _no_logprobs(cls, value: bool | int | None) -> bool | int | None:
        if value:  # null, false and 0 are what clients send when they want none
            raise ValueError("log probabilities are not served")
        return value

    @field_validator("n")
    @classmethod
    def _one_choice(cls, n: int | None) -> int | None:
        if n not in (None, 1):
            raise ValueError("only n=1 is served: one choice per request")
        return n

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def options(self, max_tokens: int | None = None) -> dict[str, Any]:
        """The pipeline's options: max_tokens, temperature, top_p, stop, seed."""
        stop = [self.stop] if isinstance(self.stop, str) else self.stop
        return {
            "max_tokens": next(
                (n for n in (max_tokens, self.max_tokens) if n is not None),
                DEFAULT_SAMPLING.max_tokens,
            ),
            "temperature": OPENAI_TEMPERATURE if self.temperature is None else self.temperature,
            "top_p": 1.0 if self.top_p is None else self.top_p,
            "stop": stop,
            "seed": self.seed,
        }


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessageIn] = Field(
        json_schema_extra={  # at least one user turn with some text
            "contains": {
                "type": "object",
                "properties": {
                    "role": {"const": "user"},
                    "content": {"type": "string", "minLength": 1},
                },
                "required": ["role", "content"],
            }
        }
    )
    max_completion_tokens: JsonInt | None = Field(
        None, json_schema_extra={"minimum": 1}
    )  # the newer name of max_tokens; it wins
    response_format: ResponseFormatIn | None = None
    modalities: Annotated[list[str] | None, _only(["text"])] = None
    # Without tools there is nothing to call: only their absence is taken (issue 22 serves them).
    tools: Annotated[list[dict[str, Any]] | None, _only([])] = None
    tool_choice: Annotated[str | None, _only("none", "auto")] = None
    parallel_tool_calls: bool | None = None  # a rule for tool calls: nothing without tools

    def conversation(self) -> list[Message]:
        return [m.message() for m in self.messages]

    def chat_options(self) -> dict[str, Any]:
        shape = response_shape(self.response_format)
        return {**self.options(self.max_completion_tokens), "response_format": shape}

    @property
    def structured(self) -> bool:
        """Whether the reply must be JSON (a hand-off is then a refusal)."""
        return response_shape(self.response_format) is not None


class CompletionRequest(_Sampling):
    prompt: str | list[str] = Field(
        json_schema_extra={
            "minLength": 1,
            "minItems": 1,
            "maxItems": 1,
            "items": {"type": "string", "minLength": 1},
        }
    )

    best_of: Annotated[JsonInt | None, _only(1)] = None
    echo: Annotated[bool | None, _only(False)] = None
    suffix: Annotated[str | None, _only("")] = None

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, prompt: str | list[str]) -> str | list[str]:
        if isinstance(prompt, list) and len(prompt) != 1:
            raise ValueError("one prompt per request")
        return prompt

    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]
