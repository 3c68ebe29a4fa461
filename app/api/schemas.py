"""Request and response bodies of the HTTP API (docs/api.md)."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal, get_type_hints

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model
from pydantic_core import PydanticCustomError

from app.backends.protocol import DEFAULT_SAMPLING
from app.serving.limits import MAX_EARLIER_TURNS
from app.serving.results import OPENAI_ONLY, GenerateResult


def _json_integer(value: Any) -> Any:
    if isinstance(value, bool | str):  # lax mode would take true as 1 and "5" as 5
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


# JSON Schema's integer in a strict model: 5 and 5.0, never true or "5".
_JSON_INT = BeforeValidator(_json_integer)
JsonInt = Annotated[int, Field(strict=False), _JSON_INT]


def _bounds(**schema: object) -> Any:
    """Bounds for the OpenAPI document only: `app.serving.limits` checks them, once, for every
    caller (HTTP or not) and in one error shape."""
    return schema


class GenerateRequest(BaseModel):
    """Types are checked here; every bound (MAX_PROMPT_CHARS, MAX_TOKENS_LIMIT included) is
    checked by the pipeline's limits, so programs that skip HTTP get the same answers."""

    model_config = ConfigDict(extra="forbid", strict=True)  # no "5" for 5, no false for 0

    prompt: str = Field(
        description="The customer's message (1 to MAX_PROMPT_CHARS characters, not white "
        "space alone).",
        json_schema_extra=_bounds(minLength=1, pattern=r"\S"),
    )
    earlier: list[str] = Field(
        [],
        description=f"The customer's earlier messages in this conversation, oldest first (at "
        f"most {MAX_EARLIER_TURNS}, none white space alone): a follow-up is read in their light. "
        "The prompt and these share MAX_PROMPT_CHARS.",
        json_schema_extra=_bounds(
            maxItems=MAX_EARLIER_TURNS, items={"type": "string", "minLength": 1, "pattern": r"\S"}
        ),
    )
    max_tokens: JsonInt = Field(
        DEFAULT_SAMPLING.max_tokens,
        description="At most MAX_TOKENS_LIMIT.",
        json_schema_extra=_bounds(minimum=1),
    )
    temperature: float = Field(
        DEFAULT_SAMPLING.temperature,
        description="0 is greedy.",
        json_schema_extra=_bounds(minimum=0, maximum=2),
    )
    top_p: float = Field(
        DEFAULT_SAMPLING.top_p, json_schema_extra=_bounds(exclusiveMinimum=0, maximum=1)
    )
    stop: list[str] | None = Field(
        None,
        description="Up to 4 non-empty strings of at most 64 characters.",
        json_schema_extra=_bounds(
            maxItems=4, items={"type": "string", "minLength": 1, "maxLength": 64}
        ),
    )
    stream: bool = False
    # 64 bits; the document says a little less: its bounds are JSON numbers (doubles)
    seed: JsonInt | None = Field(
        None, json_schema_extra=_bounds(minimum=-(2**63) + 1024, maximum=2**63 - 1024)
    )
    label: str | None = Field(
        None,
        max_length=100,
        description="The intent this prompt is known to have, one of the service's intents: "
        "recorded in its benchmark-log row, for accuracy; never used to answer. Only an "
        "evaluation key (EVAL_API_KEYS) or the admin key may send it (403 otherwise).",
    )
    user: str | None = Field(
        None,
        max_length=256,
        description="Your id for the customer (a session or account reference), as `user` on "
        "/v1: the benchmark log keeps a keyed pseudonym of it, never the id, so one customer's "
        "requests group together.",
    )


def _public(name: str, result: type[Any]) -> type[BaseModel]:
    """A response schema with a dataclass's fields, in order: declared once, where it is made."""
    hints = get_type_hints(result)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(result):
        if f.metadata.get(OPENAI_ONLY):
            continue
        default = ... if f.default is dataclasses.MISSING else f.default
        fields[f.name] = (hints[f.name], Field(default, description=f.metadata.get("description")))
    return create_model(name, **fields)


GeneratePublic = _public("GeneratePublic", GenerateResult)


class StreamDeltaPublic(BaseModel):
    id: str
    delta: str


class ModelPublic(BaseModel):
    name: str
    backend: str
    version: str
    available: bool
    reason: str | None
    loaded: bool


class ModelsPublic(BaseModel):
    active: str | None
    models: list[ModelPublic]


Share = Annotated[float, Field(ge=0, le=1)]


class SwitchRequirements(BaseModel):
    """Conditions the candidate must meet before anything is loaded into the live slot."""

    model_config = ConfigDict(extra="forbid")

    min_shadow_samples: Annotated[int, Field(ge=0, strict=False), _JSON_INT] | None = Field(
        None, description="Pairs both models answered."
    )
    min_agreement: Share | None = Field(None, description="Intent agreement with live.")
    max_error_rate: Share | None = Field(None, description="The shadow's failures.")
    min_eval_accuracy: Share | None = Field(None, description="On eval_data, in-process.")
    eval_data: str | None = Field(
        None, min_length=1, description="A text,category CSV on the server's disk."
    )
    eval_limit: Annotated[int, Field(ge=1, strict=False), _JSON_INT] | None = Field(
        None, description="Only its first N rows."
    )


class SwitchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    require: SwitchRequirements | None = None


class ShadowRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    sample: Share = Field(0.1, description="The share of live requests mirrored to it.")


class ReplicaSwitchPublic(BaseModel):
    replica: str
    model: str | None = Field(description="the model this replica serves now")
    load_ms: float | None = Field(description="its own load and swap; null if it kept its model")
    error: str | None = None


class SwitchPublic(BaseModel):
    previous: str | None
    active: str
    load_ms: float
    replicas: list[ReplicaSwitchPublic] | None = Field(
        None, description="on Ray Serve: every live replica, each serving `active` now"
    )


class HealthPublic(BaseModel):
    status: Literal["ok", "degraded"]
    model: str
    backend: str
    version: str
    problem: str | None = None  # why the active model cannot serve now
    fallback: str | None = None  # the model answering in its place meanwhile
    log_problem: str | None = None  # why benchmark-log rows are being dropped now


class ErrorDetail(BaseModel):
    type: str
    message: str
    details: Any = None


class ErrorPublic(BaseModel):
    error: ErrorDetail


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIErrorPublic(BaseModel):
    """The `/v1` routes' error envelope (OpenAI's)."""

    error: OpenAIErrorDetail


RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 0},
    }
}
# One SSE event: `data:` holds a JSON object (or the literal [DONE] at the end).
EVENT_STREAM = {
    "text/event-stream": {
        "schema": {
            "type": "object",
            "properties": {"data": {"type": "string"}},
            "required": ["data"],
        }
    }
}


def error_responses(
    *codes: int, model: type[BaseModel] = ErrorPublic
) -> dict[int | str, dict[str, Any]]:
    """`responses=` for these error statuses, with Retry-After on 429 and 503."""
    return {
        code: {"model": model, **({"headers": RETRY_AFTER} if code in (429, 503) else {})}
        for code in codes
    }
