"""The gemini backend's options: one declaration, read from the GEMINI_* settings or from a
MODELS_FILE entry (an unknown key is an error that names it); and whether this install can
load it."""

from __future__ import annotations

import importlib.util
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from app.backends.protocol import ModelSpec


class GeminiOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    api_key: SecretStr | None = None
    model: str = "gemini-2.5-flash"
    base_url: str | None = None  # a proxy or a Gemini-compatible server; None: Google
    timeout_s: float = Field(30.0, gt=0)  # per attempt
    retry_attempts: int = Field(3, ge=1)  # attempts per request, the first one included
    retry_initial_s: float = Field(0.5, ge=0)  # backoff before the first retry
    retry_max_s: float = Field(8.0, ge=0)  # the longest backoff between two attempts
    max_retry_wait_s: float = Field(10.0, ge=0)  # the longest server-given delay we wait
    breaker_failures: int = Field(5, ge=1)  # consecutive failures that open the breaker
    breaker_cooldown_s: float = Field(30.0, gt=0)  # open this long, then one probe
    price_input_per_mtok: float = Field(0.30, ge=0)  # USD per million prompt tokens
    price_output_per_mtok: float = Field(2.50, ge=0)  # USD per million output tokens
    thinking_budget: int | None = 0  # 0: no thinking tokens; None: the model's default
    # An answer whose stated confidence is below this is a `low_confidence` hand-off. The
    # model's own word, uncalibrated: None (the default) hands off only its `out_of_scope`.
    handoff_below: float | None = Field(None, ge=0, le=1)

    @field_validator("base_url", "thinking_budget", "handoff_below", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    def cost_usd(self, prompt_tokens: int, output_tokens: int) -> float:
        cost = prompt_tokens * self.price_input_per_mtok
        cost += output_tokens * self.price_output_per_mtok
        return round(cost / 1e6, 8)


def sdk_installed() -> bool:
    return importlib.util.find_spec("google.genai") is not None


def unavailable_reason(spec: ModelSpec) -> str | None:
    if not sdk_installed():
        return "the google-genai package is not installed (pip install '.[gemini]')"
    key = spec.options_as(GeminiOptions).api_key
    if key is None or not key.get_secret_value():
        return "GEMINI_API_KEY is not set"
    return None


def model_version(spec: ModelSpec) -> str:
    return spec.options_as(GeminiOptions).model
