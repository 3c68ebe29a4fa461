"""The gemini backend's options, and whether this install can load it."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from pydantic import SecretStr

from app.registry import ModelSpec


@dataclass(frozen=True)
class GeminiOptions:
    model: str = "gemini-2.5-flash"
    api_key: SecretStr | None = None
    base_url: str | None = None
    timeout_s: float = 30.0
    retry_attempts: int = 3
    retry_initial_s: float = 0.5
    retry_max_s: float = 8.0
    max_retry_wait_s: float = 10.0
    breaker_failures: int = 5
    breaker_cooldown_s: float = 30.0
    price_input_per_mtok: float = 0.30
    price_output_per_mtok: float = 2.50
    thinking_budget: int | None = 0

    @classmethod
    def of(cls, spec: ModelSpec) -> GeminiOptions:
        known = {k: v for k, v in spec.options.items() if k in cls.__dataclass_fields__}
        key = known.get("api_key")
        if isinstance(key, str):
            known["api_key"] = SecretStr(key)
        return cls(**known)

    def cost_usd(self, prompt_tokens: int, output_tokens: int) -> float:
        cost = prompt_tokens * self.price_input_per_mtok
        cost += output_tokens * self.price_output_per_mtok
        return round(cost / 1e6, 8)


def sdk_installed() -> bool:
    return importlib.util.find_spec("google.genai") is not None


def unavailable_reason(spec: ModelSpec) -> str | None:
    if not sdk_installed():
        return "the google-genai package is not installed (pip install '.[gemini]')"
    key = GeminiOptions.of(spec).api_key
    if key is None or not key.get_secret_value():
        return "GEMINI_API_KEY is not set"
    return None


def model_version(spec: ModelSpec) -> str:
    return GeminiOptions.of(spec).model
