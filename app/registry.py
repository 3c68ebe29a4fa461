"""The registry of named models: the defaults from the settings plus MODELS_FILE's extras, each
validated through its backend's own options type."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from app.adapters import BACKENDS
from app.adapters.protocol import ModelSpec
from app.settings import Settings


def _defaults(settings: Settings) -> dict[str, BaseModel]:
    """Each backend's options as the settings give them: what a MODELS_FILE entry starts from.
    A custom model batches up to MAX_CONCURRENCY requests unless told otherwise."""
    custom = settings.custom
    if custom.max_batch is None:
        custom = custom.model_copy(update={"max_batch": settings.max_concurrency})
    given: dict[str, BaseModel] = {
        "custom": custom,
        "qlora": settings.qlora,
        "gemini": settings.gemini,
    }
    return {name: given.get(name) or backend.options() for name, backend in BACKENDS.items()}


def _spec(source: str, entry: Any, defaults: dict[str, BaseModel]) -> ModelSpec:
    if not isinstance(entry, dict) or not {"name", "backend"} <= entry.keys():
        raise ValueError(f"{source}: each model needs a name and a backend: {entry}")
    name, backend = str(entry["name"]), entry["backend"]
    if backend not in BACKENDS:
        raise ValueError(
            f"{source}: unknown backend {backend!r} for {name!r}; one of {', '.join(BACKENDS)}"
        )
    unknown = set(entry) - {"name", "backend", "options"}
    if unknown:
        raise ValueError(f"{source}: model {name!r} has unknown keys: {', '.join(sorted(unknown))}")
    options = entry.get("options", {})
    if not isinstance(options, dict):
        raise ValueError(f"{source}: the options of {name!r} must be an object")
    base = defaults[backend].model_dump()
    try:
        validated = BACKENDS[backend].options.model_validate({**base, **options})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ValueError(f"{source}: model {name!r} ({backend}): {problems}") from None
    return ModelSpec(name, backend, validated)


def _file_entries(path: Path) -> list[Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"MODELS_FILE {path}: {exc}") from exc
    entries = data.get("models") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise ValueError(f'MODELS_FILE {path}: expected a list of models or {{"models": [...]}}')
    return entries


def build_registry(settings: Settings) -> dict[str, ModelSpec]:
    """Name -> spec. A MODELS_FILE entry with a default's name replaces that default; its
    options start from the backend's settings (GEMINI_*, QLORA_*) and override them."""
    defaults = _defaults(settings)
    registry = {
        name: ModelSpec(name, name, defaults[name]) for name in ("custom", "qlora", "gemini")
    }
    if settings.enable_echo_model:
        registry["echo"] = ModelSpec("echo", "echo", defaults["echo"])
    if settings.models_file is not None:
        source = f"MODELS_FILE {settings.models_file}"
        for entry in _file_entries(settings.models_file):
            spec = _spec(source, entry, defaults)
            registry[spec.name] = spec
    if settings.fallback_model is not None and settings.fallback_model not in registry:
        raise ValueError(
            f"FALLBACK_MODEL={settings.fallback_model!r} is not a registered model; "
            f"one of {', '.join(sorted(registry))}"
        )
    return registry
