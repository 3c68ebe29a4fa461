"""Service configuration: one `Settings`, read from the environment and an optional env file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "default"


class Settings(BaseSettings):
    # an empty variable means "unset": compose passes `KEY: ${KEY:-}` through as ""
    model_config = SettingsConfigDict(
        extra="ignore", env_file_encoding="utf-8", env_ignore_empty=True
    )

    # which model serves at start; any name of the registry (three defaults, MODELS_FILE, echo)
    active_model: str = "custom"
    custom_checkpoint: Path = DEFAULT_CHECKPOINT
    qlora_base_model: str = ""
    qlora_adapter: str = ""
    qlora_engine: Literal["vllm", "transformers"] = "vllm"
    qlora_quantization: Literal["bitsandbytes", "none"] = "bitsandbytes"
    qlora_dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    qlora_max_model_len: int = Field(2048, ge=16)  # prompt + reply tokens
    qlora_max_lora_rank: int = Field(16, ge=1)  # vLLM: the largest adapter rank it accepts
    qlora_gpu_memory_utilization: float = Field(0.85, gt=0, le=1)  # vLLM on GPU
    qlora_kv_cache_bytes: int | None = Field(None, ge=1)  # vLLM: explicit KV cache (CPU needs it)
    qlora_max_batch: int = Field(8, ge=1)  # transformers: requests decoded together
    gemini_api_key: SecretStr | None = None
    gemini_model: str = "gemini-2.5-flash"
    gemini_base_url: str | None = None  # a proxy or a Gemini-compatible server; None: Google
    gemini_timeout_s: float = Field(30.0, gt=0)  # per attempt
    gemini_retry_attempts: int = Field(3, ge=1)  # attempts per request, the first one included
    gemini_retry_initial_s: float = Field(0.5, ge=0)  # backoff before the first retry
    gemini_retry_max_s: float = Field(8.0, ge=0)  # the longest backoff between two attempts
    gemini_max_retry_wait_s: float = Field(10.0, ge=0)  # the longest server-given delay we wait
    gemini_breaker_failures: int = Field(5, ge=1)  # consecutive failures that open the breaker
    gemini_breaker_cooldown_s: float = Field(30.0, gt=0)  # open this long, then one probe
    gemini_price_input_per_mtok: float = Field(0.30, ge=0)  # USD per million prompt tokens
    gemini_price_output_per_mtok: float = Field(2.50, ge=0)  # USD per million output tokens
    gemini_thinking_budget: int | None = 0  # 0: no thinking tokens; None: the model's default
    cloud_pii_policy: Literal["redact", "block", "allow"] = "redact"
    fallback_model: str | None = None  # answers when a cloud model fails before its first token
    models_file: Path | None = None  # JSON list of extra models: name, backend, options
    enable_echo_model: bool = False  # a model-free `echo` backend to measure our own overhead

    # comma-separated; empty disables auth (with a warning at start)
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    admin_api_key: SecretStr | None = None

    max_prompt_chars: int = Field(4000, ge=1)
    max_tokens_limit: int = Field(512, ge=1)
    max_concurrency: int = Field(
        16, ge=1
    )  # generations running at once (a custom model batches them)
    max_queue: int = Field(64, ge=0)  # requests waiting for a slot before 429
    request_timeout_s: float = Field(60.0, gt=0)
    switch_mode: Literal["overlap", "drain_first"] = "overlap"

    benchmark_log: Path = Path("logs/benchmarks.jsonl")
    benchmark_every: int = Field(50, ge=1)
    log_level: str = "INFO"

    @field_validator(
        "gemini_base_url",
        "fallback_model",
        "gemini_thinking_budget",
        "qlora_kv_cache_bytes",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @property
    def max_body_bytes(self) -> int:
        """Largest body accepted before 413: the longest prompt in 4-byte UTF-8, plus room."""
        return self.max_prompt_chars * 4 + 16_384


SECRETS_DIR = Path("/run/secrets")  # where Docker and compose mount secrets


def get_settings(
    env_file: str | Path | None = None, secrets_dir: Path | None = None, **overrides: Any
) -> Settings:
    """Settings from explicit overrides, then the environment, then env_file (if given), then
    secret files named after the settings (`gemini_api_key`) in secrets_dir, /run/secrets by
    default when it exists."""
    secrets = secrets_dir or (SECRETS_DIR if SECRETS_DIR.is_dir() else None)
    return Settings(_env_file=env_file, _secrets_dir=secrets, **overrides)  # type: ignore[call-arg]
