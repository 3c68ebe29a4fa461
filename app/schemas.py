"""Request and response bodies of the HTTP API (field order follows DESIGN.md)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class GenerateRequest(BaseModel):
    """Static bounds live here; the configurable ones (MAX_PROMPT_CHARS, MAX_TOKENS_LIMIT) are
    checked by the pipeline, so programs that skip HTTP get the same answers."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, description="The customer's message.")
    max_tokens: int = Field(128, ge=1)
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: list[str] | None = Field(None, max_length=4)
    stream: bool = False
    seed: int | None = None


class GeneratePublic(BaseModel):
    id: str
    model: str
    backend: str
    version: str
    text: str
    intent: str | None
    finish_reason: Literal["stop", "length"]
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    ttft_ms: float | None
    fallback_from: str | None = Field(
        None, description="The remote model that failed before FALLBACK_MODEL answered."
    )


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


class SwitchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)


class SwitchPublic(BaseModel):
    previous: str | None
    active: str
    load_ms: float


class HealthPublic(BaseModel):
    status: Literal["ok", "degraded"]
    model: str
    backend: str
    version: str
    problem: str | None = None  # why the active model cannot serve now
    fallback: str | None = None  # the model answering in its place meanwhile


class ErrorDetail(BaseModel):
    type: str
    message: str
    details: Any = None


class ErrorPublic(BaseModel):
    error: ErrorDetail
