"""The registry of named models: the defaults from the settings plus MODELS_FILE's extras."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from app.settings import Settings

BACKEND_NAMES = ("custom", "qlora", "gemini", "echo")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    backend: str
    options: dict[str, Any] = field(default_factory=dict)


def _default_specs(settings: Settings) -> list[ModelSpec]:
    specs = [
        ModelSpec("custom", "custom", {"checkpoint": str(settings.custom_checkpoint)}),
        ModelSpec("qlora", "qlora", qlora_options(settings)),
        ModelSpec("gemini", "gemini", gemini_options(settings)),
    ]
    if settings.enable_echo_model:
        specs.append(ModelSpec("echo", "echo"))
    return specs


def qlora_options(settings: Settings) -> dict[str, Any]:
    """The qlora backend's options from the settings; a MODELS_FILE entry overrides any."""
    s = settings
    return {
        "base_model": s.qlora_base_model,
        "adapter": s.qlora_adapter,
        "engine": s.qlora_engine,
        "quantization": s.qlora_quantization,
        "dtype": s.qlora_dtype,
        "max_model_len": s.qlora_max_model_len,
        "max_lora_rank": s.qlora_max_lora_rank,
        "gpu_memory_utilization": s.qlora_gpu_memory_utilization,
        "kv_cache_bytes": s.qlora_kv_cache_bytes,
        "max_batch": s.qlora_max_batch,
    }


def gemini_options(settings: Settings) -> dict[str, Any]:
    """The gemini backend's options from the settings; a MODELS_FILE entry overrides any."""
    s = settings
    return {
        "model": s.gemini_model,
        "api_key": s.gemini_api_key,
        "base_url": s.gemini_base_url,
        "timeout_s": s.gemini_timeout_s,
        "retry_attempts": s.gemini_retry_attempts,
        "retry_initial_s": s.gemini_retry_initial_s,
        "retry_max_s": s.gemini_retry_max_s,
        "max_retry_wait_s": s.gemini_max_retry_wait_s,
        "breaker_failures": s.gemini_breaker_failures,
        "breaker_cooldown_s": s.gemini_breaker_cooldown_s,
        "price_input_per_mtok": s.gemini_price_input_per_mtok,
        "price_output_per_mtok": s.gemini_price_output_per_mtok,
        "thinking_budget": s.gemini_thinking_budget,
    }


def _file_specs(settings: Settings) -> list[ModelSpec]:
    if settings.models_file is None:
        return []
    path = settings.models_file
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"MODELS_FILE {path}: {exc}") from exc
    entries = data.get("models") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise ValueError(f'MODELS_FILE {path}: expected a list of models or {{"models": [...]}}')
    specs = []
    for entry in entries:
        if not isinstance(entry, dict) or not {"name", "backend"} <= entry.keys():
            raise ValueError(f"MODELS_FILE {path}: each model needs a name and a backend: {entry}")
        if entry["backend"] not in BACKEND_NAMES:
            raise ValueError(
                f"MODELS_FILE {path}: unknown backend {entry['backend']!r} "
                f"for {entry['name']!r}; one of {', '.join(BACKEND_NAMES)}"
            )
        options = dict(entry.get("options", {}))
        specs.append(ModelSpec(str(entry["name"]), entry["backend"], options))
    return specs


def build_registry(settings: Settings) -> dict[str, ModelSpec]:
    """Name -> spec. A MODELS_FILE entry with a default's name replaces that default.

    A custom model batches up to MAX_CONCURRENCY requests unless its options say otherwise; a
    gemini or qlora model takes the GEMINI_* or QLORA_* settings its options do not name.
    """
    registry = {spec.name: spec for spec in _default_specs(settings)}
    registry.update({spec.name: spec for spec in _file_specs(settings)})
    for spec in registry.values():
        if spec.backend == "custom":
            spec.options.setdefault("max_batch", settings.max_concurrency)
        elif spec.backend in ("gemini", "qlora"):
            defaults = gemini_options if spec.backend == "gemini" else qlora_options
            for key, value in defaults(settings).items():
                spec.options.setdefault(key, value)
    if settings.fallback_model is not None and settings.fallback_model not in registry:
        raise ValueError(
            f"FALLBACK_MODEL={settings.fallback_model!r} is not a registered model; "
            f"one of {', '.join(sorted(registry))}"
        )
    return registry
