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
        ModelSpec("qlora", "qlora", backend_options(settings, "qlora")),
        ModelSpec("gemini", "gemini", backend_options(settings, "gemini")),
    ]
    if settings.enable_echo_model:
        specs.append(ModelSpec("echo", "echo"))
    return specs


def backend_options(settings: Settings, backend: str) -> dict[str, Any]:
    """A backend's options from its settings: QLORA_BASE_MODEL is the qlora option
    `base_model`, GEMINI_TIMEOUT_S the gemini option `timeout_s`, and so on."""
    prefix = f"{backend}_"
    return {
        name.removeprefix(prefix): getattr(settings, name)
        for name in type(settings).model_fields
        if name.startswith(prefix)
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
            for key, value in backend_options(settings, spec.backend).items():
                spec.options.setdefault(key, value)
    if settings.fallback_model is not None and settings.fallback_model not in registry:
        raise ValueError(
            f"FALLBACK_MODEL={settings.fallback_model!r} is not a registered model; "
            f"one of {', '.join(sorted(registry))}"
        )
    return registry
