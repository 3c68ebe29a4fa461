"""Fixtures of the adapter tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from app.backends.gemini.adapter import GeminiAdapter
from app.banking.intents import IntentSet
from app.models.registry import build_registry
from app.settings import Settings

OpenGemini = Callable[..., Awaitable[GeminiAdapter]]


@pytest.fixture
async def open_adapter(gemini_settings: Callable[..., Settings]) -> AsyncIterator[OpenGemini]:
    """Load gemini adapters on the fake server for given settings; all closed afterwards."""
    opened: list[GeminiAdapter] = []

    async def make(**overrides: Any) -> GeminiAdapter:
        spec = build_registry(gemini_settings(**overrides))["gemini"]
        adapter = GeminiAdapter(spec, IntentSet.load())
        await adapter.load()
        opened.append(adapter)
        return adapter

    yield make
    for adapter in opened:
        await adapter.close()
