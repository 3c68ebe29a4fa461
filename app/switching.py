"""The model that serves now: leases for requests, and the hot switch between models."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal

from app.adapters import load_adapter
from app.adapters.protocol import Adapter, ModelInfo, SamplingParams
from app.errors import ModelNotFound, ModelUnavailable, SwitchInProgress
from app.registry import ModelSpec
from app.telemetry.metrics import Metrics

logger = logging.getLogger(__name__)
WARM_UP = ("Hello", SamplingParams(max_tokens=2, temperature=0.0))


@dataclass(frozen=True)
class SwitchResult:
    previous: str | None
    active: str
    load_ms: float


def _idle_event() -> asyncio.Event:
    event = asyncio.Event()
    event.set()
    return event


@dataclass(eq=False)
class _Slot:
    name: str
    adapter: Adapter
    in_flight: int = 0
    idle: asyncio.Event = field(default_factory=_idle_event)  # set while nothing is in flight


class ActiveModel:
    def __init__(
        self,
        registry: dict[str, ModelSpec],
        mode: Literal["overlap", "drain_first"],
        metrics: Metrics,
    ):
        self._registry = registry
        self._mode = mode
        self._metrics = metrics
        self._slot: _Slot | None = None
        self._ready = _idle_event()  # cleared while a drain_first switch holds new requests
        self._switch_lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()

    @property
    def name(self) -> str | None:
        return self._slot.name if self._slot else None

    @property
    def info(self) -> ModelInfo | None:
        return self._slot.adapter.info if self._slot else None

    @property
    def problem(self) -> str | None:
        return self._slot.adapter.problem if self._slot else None

    @property
    def switching(self) -> bool:
        return self._switch_lock.locked()

    async def start(self, name: str) -> None:
        """Load the first model; raises ModelUnavailable (and serves nothing) when it cannot."""
        async with self._switch_lock:
            self._install(name, await self._load(self._spec(name)))

    @asynccontextmanager
    async def lease(self) -> AsyncIterator[Adapter]:
        """The adapter to serve one request with; it stays open until the lease ends."""
        await self._ready.wait()
        slot = self._slot
        if slot is None:
            raise ModelUnavailable("no model is loaded; an admin can load one with POST /switch")
        slot.in_flight += 1
        slot.idle.clear()
        try:
            yield slot.adapter
        finally:
            slot.in_flight -= 1
            if slot.in_flight == 0:
                slot.idle.set()

    async def switch(self, name: str) -> SwitchResult:
        spec = self._spec(name)
        if self._switch_lock.locked():
            raise SwitchInProgress("another model switch is in progress; retry when it ends")
        async with self._switch_lock:
            previous = self.name
            if previous == name:
                return SwitchResult(previous, name, 0.0)
            started = time.perf_counter()
            try:
                if self._mode == "overlap":
                    self._replace(name, await self._load(spec))
                else:
                    await self._drain_then_load(spec)
            except ModelUnavailable:
                self._metrics.switches.labels("failed").inc()
                raise
            seconds = time.perf_counter() - started
            self._metrics.switches.labels("ok").inc()
            self._metrics.switch_latency.labels(previous or "none", name).observe(seconds)
            logger.info("switched from %s to %s in %.0f ms", previous, name, seconds * 1000)
            return SwitchResult(previous, name, round(seconds * 1000, 1))

    async def close(self) -> None:
        async with self._switch_lock:
            if self._retiring:
                await asyncio.gather(*self._retiring)
            if self._slot is not None:
                slot, self._slot = self._slot, None
                await slot.adapter.close()

    def _spec(self, name: str) -> ModelSpec:
        spec = self._registry.get(name)
        if spec is None:
            raise ModelNotFound(f"no model named {name!r}", {"models": sorted(self._registry)})
        return spec

    async def _load(self, spec: ModelSpec) -> Adapter:
        adapter = await load_adapter(spec)
        try:
            await adapter.generate(*WARM_UP)
        except Exception as exc:
            await adapter.close()
            raise ModelUnavailable(f"model {spec.name!r} failed its warm-up: {exc}") from exc
        return adapter

    def _install(self, name: str, adapter: Adapter) -> None:
        self._slot = _Slot(name, adapter)
        info = adapter.info
        self._metrics.set_active(info.name, info.backend, info.version)

    def _replace(self, name: str, adapter: Adapter) -> None:
        """Swap in the new adapter at once; the old one closes when its requests are done."""
        old = self._slot
        self._install(name, adapter)
        if old is not None:
            task = asyncio.create_task(self._close_when_idle(old))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    @staticmethod
    async def _close_when_idle(slot: _Slot) -> None:
        await slot.idle.wait()
        await slot.adapter.close()

    async def _drain_then_load(self, spec: ModelSpec) -> None:
        """For one device that cannot hold two models: close the old one first."""
        self._ready.clear()
        old = self._slot
        try:
            if old is not None:
                await old.idle.wait()
                self._slot = None
                await old.adapter.close()
            try:
                self._install(spec.name, await self._load(spec))
            except ModelUnavailable:
                if old is not None:  # bring the old model back; if that fails too, serve 503
                    try:
                        self._install(old.name, await self._load(self._spec(old.name)))
                    except ModelUnavailable:
                        logger.exception("could not reload %s after a failed switch", old.name)
                raise
        finally:
            self._ready.set()
