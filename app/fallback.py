"""FALLBACK_MODEL: a model loaded beside the active one that answers for a remote model when
it fails before its first token (after its retries, or with its circuit open)."""

from __future__ import annotations

import logging

from app.adapters import load_adapter
from app.adapters.protocol import Adapter, ModelInfo
from app.errors import ModelUnavailable
from app.registry import ModelSpec

logger = logging.getLogger(__name__)


class Standby:
    def __init__(self, spec: ModelSpec | None):
        self._spec = spec
        self._adapter: Adapter | None = None

    @property
    def name(self) -> str | None:
        return self._adapter.info.name if self._adapter else None

    async def start(self) -> None:
        """Load the fallback; one that cannot load is logged and leaves failures as they are."""
        if self._spec is None:
            return
        try:
            self._adapter = await load_adapter(self._spec)
        except ModelUnavailable as exc:
            logger.error("FALLBACK_MODEL %s is off: %s", self._spec.name, exc.message)

    def replacing(self, failed: ModelInfo) -> Adapter | None:
        """The adapter that answers for `failed`, or None (no fallback, or it is the same)."""
        if self._adapter is None or self._adapter.info.name == failed.name:
            return None
        return self._adapter

    async def close(self) -> None:
        if self._adapter is not None:
            adapter, self._adapter = self._adapter, None
            await adapter.close()
