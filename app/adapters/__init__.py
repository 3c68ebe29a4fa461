"""Backends by name, and the one function that turns a model spec into a loaded adapter."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from app.adapters import custom, gemini, gemini_options, qlora
from app.adapters.echo import EchoAdapter
from app.adapters.protocol import Adapter
from app.errors import ModelUnavailable
from app.registry import ModelSpec


class Backend(NamedTuple):
    create: Callable[[ModelSpec], Adapter]  # builds an unloaded adapter
    unavailable: Callable[[ModelSpec], str | None]  # why this install cannot load it, or None
    version: Callable[[ModelSpec], str]  # shown by /models before the model is loaded
    remote: bool = False  # prompts leave the process: CLOUD_PII_POLICY applies


BACKENDS: dict[str, Backend] = {
    "custom": Backend(custom.CustomAdapter, custom.unavailable_reason, custom.checkpoint_version),
    "echo": Backend(EchoAdapter, lambda spec: None, lambda spec: "fixed-reply-1"),
    "qlora": Backend(qlora.QLoRAAdapter, qlora.unavailable_reason, qlora.adapter_version),
    "gemini": Backend(
        gemini.GeminiAdapter,
        gemini_options.unavailable_reason,
        gemini_options.model_version,
        remote=True,
    ),
}


def unavailable_reason(spec: ModelSpec) -> str | None:
    return BACKENDS[spec.backend].unavailable(spec)


def is_remote(backend: str) -> bool:
    """Whether prompts to this backend leave the process."""
    entry = BACKENDS.get(backend)
    return entry is not None and entry.remote


def spec_version(spec: ModelSpec) -> str:
    return BACKENDS[spec.backend].version(spec)


async def load_adapter(spec: ModelSpec) -> Adapter:
    """Build the spec's adapter and load it; raises ModelUnavailable when it cannot be."""
    if (reason := unavailable_reason(spec)) is not None:
        raise ModelUnavailable(f"model {spec.name!r} is unavailable: {reason}")
    adapter = BACKENDS[spec.backend].create(spec)
    try:
        await adapter.load()
    except ModelUnavailable:
        raise
    except Exception as exc:
        await adapter.close()
        raise ModelUnavailable(f"model {spec.name!r} failed to load: {exc}") from exc
    return adapter
