"""The registry of named models: the defaults from the settings plus MODELS_FILE's extras, each
validated through its backend's own options type."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from app.backends.catalog import BACKENDS, spec_version, turns_read, unavailable_reason
from app.backends.custom.options import CustomOptions
from app.backends.protocol import ModelInfo, ModelSpec
from app.settings import Settings


def _defaults(settings: Settings) -> dict[str, BaseModel]:
    """Each backend's options as the settings give them (the defaults of a backend without
    settings): what a MODELS_FILE entry starts from. A custom model batches up to
    MAX_CONCURRENCY requests unless told otherwise."""
    given: dict[str, BaseModel] = {n: getattr(settings, n) for n in settings.backend_options()}
    custom = given.get("custom")
    if isinstance(custom, CustomOptions) and custom.max_batch is None:
        given["custom"] = custom.model_copy(update={"max_batch": settings.max_concurrency})
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
    # one model per backend that has settings, named after it
    registry = {name: ModelSpec(name, name, defaults[name]) for name in settings.backend_options()}
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


@dataclass(frozen=True)
class ModelStatus:
    name: str
    backend: str
    version: str
    available: bool
    reason: str | None
    loaded: bool
    turns: str = "whole conversation"  # what of a conversation it reads


def model_statuses(registry: dict[str, ModelSpec], active: ModelInfo | None) -> list[ModelStatus]:
    """Each registered model: whether this install can load it, and whether it serves now."""
    statuses = []
    for name, spec in registry.items():
        reason = unavailable_reason(spec)
        loaded = active is not None and name == active.name
        version = active.version if active and loaded else spec_version(spec)
        turns = turns_read(spec.backend)
        statuses.append(
            ModelStatus(name, spec.backend, version, reason is None, reason, loaded, turns)
        )
    return statuses
