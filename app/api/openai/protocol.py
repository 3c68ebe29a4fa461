"""OpenAI's request shapes as we accept them, and what they mean to the pipeline. A field we do
not serve is refused with 400 naming it, never ignored (a caller who asks for JSON, tools or a
penalty must not get prose and believe it was honoured); fields that change nothing here are
taken, some only at their neutral values (`only`). Every optional field takes null."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from app.api.openai.body import OpenAIBody, only
from app.api.openai.outputs import (
    NamedToolChoice,
    ResponseFormatIn,
    ToolCallIn,
    ToolIn,
    response_shape,
)
from app.api.schemas import JsonInt
from app.backends.protocol import DEFAULT_SAMPLING, Message, Role
from app.backends.tools import Tools

OPENAI_TEMPERATURE = 1.0  # OpenAI's default; `/generate` keeps ours
_OPENAI_ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",  # OpenAI's newer name for the system turn
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",  # a tool call's result
}


class ContentPart(OpenAIBody):
    type: str = Field(json_schema_extra={"const": "text"})
    text: str  # a part without text is refused


class ChatMessageIn(OpenAIBody):
    role: str = Field(
        description="system and developer turns only where the deployment sets "
        "ALLOW_SYSTEM_TURNS=true (400 otherwise): the bank's system prompt instructs the model",
        json_schema_extra={"enum": list(_OPENAI_ROLES)},
    )
    content: str | list[ContentPart] | None = None
    name: str | None = None  # a participant's name: a label, it changes no answer
    # what an assistant turn passed back as the SDK returned it may carry, empty
    refusal: str | None = None
    tool_calls: list[ToolCallIn] | None = None  # an assistant turn's calls
    tool_call_id: str | None = None  # a tool turn's: the call whose result it is
    function_call: Annotated[dict[str, Any] | None, only()] = None
    audio: Annotated[dict[str, Any] | None, only()] = None
    annotations: Annotated[list[dict[str, Any]] | None, only([])] = None

    @field_validator("role")
    @classmethod
    def _served_role(cls, role: str) -> str:
        if role not in _OPENAI_ROLES:
            raise ValueError(f"one of {', '.join(_OPENAI_ROLES)}")
        return role

    @model_validator(mode="after")
    def _tool_fields_in_their_turns(self) -> ChatMessageIn:
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only an assistant turn carries tool_calls")
        if (self.tool_call_id is not None) != (self.role == "tool"):
            raise ValueError("a tool turn, and only a tool turn, names its tool_call_id")
        return self

    @field_validator("content")
    @classmethod
    def _text_only(cls, content: Any) -> Any:
        if isinstance(content, list) and any(p.type != "text" or p.text is None for p in content):
            raise ValueError("only text parts are served")
        return content

    def message(self, called: dict[str, str]) -> Message:
        """The turn; a tool turn names the function whose call it answers (from `called`, the
        earlier calls' ids and names)."""
        content = self.content
        if isinstance(content, list):
            content = "".join(part.text or "" for part in content)
        calls = tuple(call.call() for call in self.tool_calls or ())
        answered = self.tool_call_id
        name = called.get(answered) if answered is not None else None
        return Message(_OPENAI_ROLES[self.role], content or "", calls, answered, name)


class StreamOptions(OpenAIBody):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None  # padding against side channels: none is sent


class _Sampling(OpenAIBody):
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
    # Taken at the values that change nothing; any other is refused, naming the field.
    frequency_penalty: Annotated[float | None, only(0.0)] = None
    presence_penalty: Annotated[float | None, only(0.0)] = None
    logit_bias: Annotated[dict[str, float] | None, only({})] = None
    store: Annotated[bool | None, only(False)] = None  # no completion is kept for later
    service_tier: Annotated[str | None, only("auto", "default")] = None
    ignore_eos: Annotated[bool | None, only(False)] = None  # vLLM's; benchmarks send it
    # Hints and labels for the caller's own bookkeeping: they change no answer.
    metadata: dict[str, str] | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None

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
            "logprobs": self.asked_logprobs,
        }

    @property
    def asked_logprobs(self) -> int | None:
        """How many alternatives each token's log-probability comes with; None: none asked."""
        return None


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
    logprobs: bool | None = None
    top_logprobs: JsonInt | None = Field(None, ge=0, le=20)
    max_completion_tokens: JsonInt | None = Field(
        None, json_schema_extra={"minimum": 1}
    )  # the newer name of max_tokens; it wins
    response_format: ResponseFormatIn | None = None
    modalities: Annotated[list[str] | None, only(["text"])] = None
    tools: list[ToolIn] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None  # false: more than one call is the model's failure

    @field_validator("top_logprobs")
    @classmethod
    def _top_logprobs_with_logprobs(cls, top: int | None, info: ValidationInfo) -> int | None:
        if top and not info.data.get("logprobs"):  # 0 is what clients send for none
            raise ValueError("needs logprobs: true")
        return top

    @property
    def asked_logprobs(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None

    def conversation(self) -> list[Message]:
        called: dict[str, str] = {}
        turns = []
        for m in self.messages:
            turns.append(m.message(called))
            called |= {call.id: call.function.name for call in m.tool_calls or ()}
        return turns

    def chat_options(self) -> dict[str, Any]:
        shape = response_shape(self.response_format)
        options = self.options(self.max_completion_tokens)
        return {**options, "response_format": shape, "tools": self.offered_tools()}

    def offered_tools(self) -> Tools | None:
        """The tools the model is offered, and what it must call; None: it may call none."""
        choice = self.tool_choice
        if choice == "none" or (not self.tools and choice in (None, "auto")):
            return None
        offered = tuple(t.tool() for t in self.tools or ())
        parallel = self.parallel_tool_calls is not False
        if isinstance(choice, NamedToolChoice):
            return Tools(offered, "required", choice.function.name, parallel)
        return Tools(offered, "required" if choice == "required" else "auto", parallel=parallel)

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

    # the sampled token's log-probability, and this many others' (OpenAI's most is 5)
    logprobs: JsonInt | None = Field(None, ge=0, le=5)
    best_of: Annotated[JsonInt | None, only(1)] = None
    echo: Annotated[bool | None, only(False)] = None
    suffix: Annotated[str | None, only("")] = None

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, prompt: str | list[str]) -> str | list[str]:
        if isinstance(prompt, list) and len(prompt) != 1:
            raise ValueError("one prompt per request")
        return prompt

    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    @property
    def asked_logprobs(self) -> int | None:
        return self.logprobs
