"""Service configuration: one `Settings`, read from the environment and an optional env file."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NestedSecretsSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from app.backends.custom.options import DEFAULT_CHECKPOINT, CustomOptions
from app.backends.gemini.options import GeminiOptions
from app.backends.qlora.options import QLoRAOptions
from app.telemetry.recommend import P95_BUDGET_MS, Priority

__all__ = ["DEFAULT_CHECKPOINT", "Settings", "get_settings"]
logger = logging.getLogger(__name__)


class Settings(BaseSettings):
    # an empty variable means "unset": compose passes `KEY: ${KEY:-}` through as ""
    model_config = SettingsConfigDict(
        extra="ignore",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        env_nested_delimiter="_",
        env_nested_max_split=1,  # QLORA_MAX_MODEL_LEN -> qlora.max_model_len
        secrets_nested_delimiter="_",  # /run/secrets/gemini_api_key -> gemini.api_key
        hide_input_in_errors=True,  # an error about a key must not print the key
    )

    # which model serves at start; any name of the registry (three defaults, MODELS_FILE, echo)
    active_model: str = "custom"
    # Each backend's options are declared once, by the backend; they are settings under the
    # backend's name: CUSTOM_CHECKPOINT is `custom.checkpoint`, QLORA_BASE_MODEL
    # `qlora.base_model`. Each is also the registry's model of that name.
    custom: CustomOptions = CustomOptions()
    qlora: QLoRAOptions = QLoRAOptions()
    gemini: GeminiOptions = GeminiOptions()
    cloud_pii_policy: Literal["redact", "block", "allow"] = "block"
    fallback_model: str | None = None  # answers when a cloud model fails before its first token
    # a candidate loaded beside the active model: SHADOW_SAMPLE of live requests are asked of it
    # too, its intents compared with the live ones and recorded; it answers no one
    shadow_model: str | None = None
    shadow_sample: float = Field(0.1, ge=0, le=1)
    shadow_queue: int = Field(32, ge=1)  # mirrored requests waiting; more are dropped, counted
    shadow_max_cost_usd: float | None = Field(None, ge=0)  # a UTC day's spend on a paid shadow
    shadow_seed: int | None = None  # a fixed sampling sequence (tests, replays)
    shadow_concurrency: int = Field(8, ge=1)  # mirrored requests answered as one batch
    shadow_batch_window_s: float = Field(1.0, ge=0)  # how long a batch waits to fill
    models_file: Path | None = None  # JSON list of extra models: name, backend, options
    enable_echo_model: bool = False  # a model-free `echo` backend to measure our own overhead

    # comma-separated; empty disables auth (with a warning at start)
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    admin_api_key: SecretStr | None = None
    # keys of evaluation jobs: users whose `label` (an intent they know a prompt has) counts
    # toward accuracy, the gate and the recommendation, as the admin key's does
    eval_api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    # keys the HMAC that names users and keys in the logs: the same for every replica
    pseudonym_secret: SecretStr | None = None
    # a development install: keys shorter than MIN_KEY_CHARS or published ones are let through
    # with a warning; never in service
    dev_mode: bool = False
    docs_enabled: bool = True  # false: no /docs, /redoc or /openapi.json

    max_prompt_chars: int = Field(4000, ge=1)
    # a caller's system turns, placed after the bank's system prompt; off: a 422
    allow_system_turns: bool = False
    max_tokens_limit: int = Field(512, ge=1)
    max_concurrency: int = Field(
        16, ge=1
    )  # generations running at once (a custom model batches them)
    max_queue: int = Field(64, ge=0)  # requests waiting for a slot before 429
    # each key's own limits (app.serving.quotas), none by default: 429 with Retry-After beyond them
    key_max_in_flight: int | None = Field(None, ge=1)  # requests running or queued
    key_tokens_per_minute: int | None = Field(None, ge=1)  # completion tokens, as a bucket
    key_daily_spend_usd: float | None = Field(None, ge=0)  # on cloud models, a UTC day
    request_timeout_s: float = Field(60.0, gt=0)
    body_timeout_s: float = Field(30.0, gt=0)  # a request's body must arrive within it (408)
    switch_mode: Literal["overlap", "drain_first"] = "overlap"
    # On Ray Serve: how long a /switch waits for every replica to load and swap (then 503)
    fleet_switch_timeout_s: float = Field(600.0, gt=0)
    # On Ray Serve: where each replica serves its own /metrics (port chosen per replica);
    # 0.0.0.0 across nodes, and Prometheus finds them through GET /metrics/replicas
    replica_metrics_host: str = "127.0.0.1"
    shutdown_grace_s: float = Field(30.0, ge=0)  # SIGTERM: in-flight requests finish within
    # ACTIVE_MODEL that fails to load at start is retried in the background, the wait doubling
    start_retry_initial_s: float = Field(1.0, gt=0)
    start_retry_max_s: float = Field(60.0, gt=0)

    benchmark_log: Path = Path("logs/benchmarks.jsonl")
    # the admin actions, apart from the rows requests write (default: audit.jsonl beside them)
    audit_log: Path | None = None
    benchmark_every: int = Field(50, ge=1)
    # what the summaries' recommendation puts first, and the p95 a model must keep for it
    recommend_first: Literal["accuracy", "cost", "latency"] = "accuracy"
    recommend_p95_budget_ms: float = Field(P95_BUDGET_MS, gt=0)
    log_level: str = "INFO"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        secrets = NestedSecretsSettingsSource(file_secret_settings)
        return init_settings, env_settings, dotenv_settings, secrets

    @property
    def recommend(self) -> Priority:
        return Priority(first=self.recommend_first, p95_budget_ms=self.recommend_p95_budget_ms)

    @classmethod
    def backend_options(cls) -> dict[str, type[BaseModel]]:
        """The backends whose options are settings: name -> options type."""
        return {
            name: field.annotation
            for name, field in cls.model_fields.items()
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
        }

    @model_validator(mode="before")
    @classmethod
    def _backend_options(cls, data: Any) -> Any:
        """Fold flat names given as arguments (`qlora_base_model=...`) into their backend's
        options, and drop (with a warning) variables under a backend's prefix that are none of
        its options: the prefixes are shared with other tools' variables (GEMINI_CLI_...)."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for backend, options in cls.backend_options().items():
            nested = data.get(backend)
            if isinstance(nested, BaseModel):
                nested = nested.model_dump(exclude_unset=True)
            values = dict(nested) if isinstance(nested, dict) else {}
            for key in [k for k in data if k.startswith(f"{backend}_")]:
                values[key.removeprefix(f"{backend}_")] = data.pop(key)
            if unknown := sorted(set(values) - set(options.model_fields)):
                logger.warning(
                    "ignored, not options of %s: %s (its options: %s)",
                    backend,
                    ", ".join(f"{backend}_{k}".upper() for k in unknown),
                    ", ".join(options.model_fields),
                )
            if isinstance(nested, dict) or values:
                data[backend] = {k: v for k, v in values.items() if k in options.model_fields}
        return data

    @field_validator(
        "fallback_model",
        "shadow_model",
        "pseudonym_secret",
        "key_max_in_flight",
        "key_tokens_per_minute",
        "key_daily_spend_usd",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("api_keys", "eval_api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @model_validator(mode="after")
    def _keys_fit_for_service(self) -> Settings:
        named = [
            (f"API_KEYS key {n} of {len(self.api_keys)}", k) for n, k in enumerate(self.api_keys, 1)
        ]
        named += [
            (f"EVAL_API_KEYS key {n} of {len(self.eval_api_keys)}", k)
            for n, k in enumerate(self.eval_api_keys, 1)
        ]
        named += [("ADMIN_API_KEY", self.admin_api_key)] if self.admin_api_key else []
        for name, key in named:
            if (fault := _key_fault(name, key)) is None:
                continue
            if not self.dev_mode:
                raise ValueError(f"{fault} (make one with {MAKE_KEY}; DEV_MODE=true lets it pass)")
            logger.warning("DEV_MODE: %s; never serve with it", fault)
        return self

    @model_validator(mode="after")
    def _shadow_is_not_active(self) -> Settings:
        if self.shadow_model is not None and self.shadow_model == self.active_model:
            raise ValueError(
                f"SHADOW_MODEL={self.shadow_model!r} is ACTIVE_MODEL; a shadow is a candidate "
                "beside the active model"
            )
        if self.shadow_model is not None and self.switch_mode == "drain_first":
            raise ValueError(
                "SHADOW_MODEL loads a second model, and SWITCH_MODE=drain_first holds one at a time"
            )
        return self

    @property
    def audit_path(self) -> Path:
        return self.audit_log or self.benchmark_log.with_name("audit.jsonl")

    @property
    def max_body_bytes(self) -> int:
        """Largest body accepted before 413: the longest prompt in 4-byte UTF-8, plus room."""
        return self.max_prompt_chars * 4 + 16_384


MIN_KEY_CHARS = 16
MAKE_KEY = "`python -c 'import secrets; print(secrets.token_urlsafe(24))'`"
# Keys anyone can read: the placeholders this project's files and examples have shipped.
PUBLISHED_KEYS = frozenset({"change-me-user-key", "change-me-admin-key"})


def _key_fault(name: str, key: SecretStr) -> str | None:
    """Why a key is unfit to guard a service (short, or published), or None; never the key."""
    value = key.get_secret_value()
    if len(value) < MIN_KEY_CHARS:
        return f"{name} has {len(value)} characters; keys need at least {MIN_KEY_CHARS}"
    if value in PUBLISHED_KEYS or "change-me" in value.lower():
        return f"{name} is a published placeholder, not a secret"
    return None


SECRETS_DIR = Path("/run/secrets")  # where Docker and compose mount secrets


def get_settings(
    env_file: str | Path | None = None, secrets_dir: Path | None = None, **overrides: Any
) -> Settings:
    """Settings from explicit overrides, then the environment, then env_file (if given), then
    secret files named after the settings (`gemini_api_key`) in secrets_dir, /run/secrets by
    default when it exists."""
    secrets = secrets_dir or (SECRETS_DIR if SECRETS_DIR.is_dir() else None)
    return Settings(_env_file=env_file, _secrets_dir=secrets, **overrides)
