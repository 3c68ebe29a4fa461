"""Backends by name, and the one function that turns a model spec into a loaded adapter."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from pydantic import BaseModel

from app.backends.custom import adapter as custom
from app.backends.custom.gpt.tokenizer import EARLIER_TURNS
from app.backends.custom.options import CustomOptions
from app.backends.echo import VERSION as ECHO_VERSION
from app.backends.echo import EchoAdapter, EchoOptions
from app.backends.gemini import adapter as gemini
from app.backends.gemini import options as gemini_options
from app.backends.protocol import Adapter, ModelSpec
from app.backends.qlora import adapter as qlora
from app.backends.qlora.options import QLoRAOptions
from app.banking.intents import IntentSet
from app.errors import ModelUnavailable


class Backend(NamedTuple):
    options: type[BaseModel]  # the backend's options: settings and MODELS_FILE go through it
    create: Callable[[ModelSpec, IntentSet], Adapter]  # builds an unloaded adapter
    unavailable: Callable[[ModelSpec], str | None]  # why this install cannot load it, or None
    version: Callable[[ModelSpec], str]  # shown by /models before the model is loaded
    remote: bool = False  # prompts leave the process: CLOUD_PII_POLICY applies
    turns: str = "whole conversation"  # what of a conversation it reads, in words


BACKENDS: dict[str, Backend] = {
    "custom": Backend(
        CustomOptions,
        custom.CustomAdapter,
        custom.unavailable_reason,
        custom.checkpoint_version,
        turns=f"latest user turn, with up to {EARLIER_TURNS} before it (a checkpoint trained "
        "on conversations)",
    ),
    "echo": Backend(
        EchoOptions,
        lambda spec, intents: EchoAdapter(spec),
        lambda spec: None,
        lambda spec: ECHO_VERSION,
        turns="latest user turn",
    ),
    "qlora": Backend(
        QLoRAOptions,
        qlora.QLoRAAdapter,
        qlora.unavailable_reason,
        qlora.adapter_version,
    ),
    "gemini": Backend(
        gemini_options.GeminiOptions,
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


def turns_read(backend: str) -> str:
    """What of a conversation the backend reads, in words."""
    entry = BACKENDS.get(backend)
    return entry.turns if entry is not None else "whole conversation"


def spec_version(spec: ModelSpec) -> str:
    return BACKENDS[spec.backend].version(spec)


async def load_adapter(spec: ModelSpec, intents: IntentSet) -> Adapter:
    """Build the spec's adapter and load it; raises ModelUnavailable when it cannot be."""
    if (reason := unavailable_reason(spec)) is not None:
        raise ModelUnavailable(f"model {spec.name!r} is unavailable: {reason}")
    adapter = BACKENDS[spec.backend].create(spec, intents)
    try:
        await adapter.load()
    except ModelUnavailable:
        await adapter.close()
        raise
    except Exception as exc:
        await adapter.close()
        raise ModelUnavailable(f"model {spec.name!r} failed to load: {exc}") from exc
    except BaseException:  # cancelled mid-load (a shutdown): free what was loaded
        await adapter.close()
        raise
    return adapter
