"""The model that serves now: leases for requests, and the hot switch between models."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

from app.backends.protocol import Adapter, ModelInfo, ModelSpec
from app.errors import ModelNotFound, ModelUnavailable, SwitchInProgress
from app.models.loaded import Loaded, LoadedAdapters
from app.telemetry.metrics import Metrics

logger = logging.getLogger(__name__)
T = TypeVar("T")


class Deadline(Protocol):
    """A request's time budget, which bounds its wait for a drain_first switch."""

    def bound(self, awaitable: Awaitable[T]) -> Awaitable[T]: ...


@dataclass(frozen=True)
class ReplicaSwitch:
    """One replica's part in a switch of the whole fleet (Ray Serve)."""

    replica: str
    model: str | None  # what it serves now
    load_ms: float | None  # its own load and swap; None when it did not switch
    error: str | None = None  # why it kept its model


@dataclass(frozen=True)
class SwitchResult:
    previous: str | None
    active: str
    load_ms: float
    replicas: tuple[ReplicaSwitch, ...] | None = None  # every replica's part, on Ray Serve


def _set_event() -> asyncio.Event:
    event = asyncio.Event()
    event.set()
    return event


class ActiveModel:
    def __init__(
        self,
        registry: dict[str, ModelSpec],
        loaded: LoadedAdapters,
        mode: Literal["overlap", "drain_first"],
        metrics: Metrics,
    ):
        self._registry = registry
        self._loaded = loaded
        self._mode = mode
        self._metrics = metrics
        self._held: Loaded | None = None
        self._ready = _set_event()  # cleared while a drain_first switch holds new requests
        self._switch_lock = asyncio.Lock()
        self._switching = asyncio.Event()  # set while a switch runs

    @property
    def mode(self) -> Literal["overlap", "drain_first"]:
        return self._mode

    @property
    def current(self) -> Loaded | None:
        return self._held

    @property
    def name(self) -> str | None:
        return self._held.name if self._held else None

    @property
    def info(self) -> ModelInfo | None:
        return self._held.adapter.info if self._held else None

    @property
    def problem(self) -> str | None:
        held = self._held
        return (held.adapter.problem or held.degraded) if held else None

    @property
    def failing(self) -> str | None:
        """Why requests fail fast now (a rejected key, an open circuit). A model degraded only
        by a failed warm-up still takes requests: the first answer clears it."""
        return self._held.adapter.problem if self._held else None

    def answered(self, adapter: Adapter) -> None:
        """A request succeeded: a model that was degraded since its start serves again."""
        held = self._held
        if held is not None and held.degraded is not None and held.adapter is adapter:
            logger.info("%s answered: no longer degraded", held.name)
            held.degraded = None

    @property
    def switching(self) -> bool:
        return self._switch_lock.locked()

    async def until_switching(self) -> None:
        """Resolves once a switch is running (tests and admin tools wait on it)."""
        await self._switching.wait()

    async def start(self, name: str) -> bool:
        """Load the first model, degraded if a remote one cannot warm up; raises
        ModelUnavailable (and serves nothing) when it cannot load. False when a switch
        installed a model first (a retried start then leaves it be)."""
        if self._held is not None:
            return False
        # Loaded outside the switch lock: an admin may switch meanwhile (and wins).
        loaded = await self._loaded.acquire(self._spec(name), degraded_ok=True)
        async with self._switch_lock:
            if self._held is not None:
                await self._loaded.release(loaded)
                return False
            self._install(loaded)
            return True

    def lease(self, deadline: Deadline | None = None) -> _ActiveLease:
        """The adapter to serve one request with; it stays open until the lease ends. Waits
        (within `deadline`, if given) while a drain_first switch holds new requests."""
        return _ActiveLease(self, deadline)

    async def hold(self) -> Loaded:
        """Count a request against the active model (what a lease does on entering)."""
        await self._ready.wait()  # returns at once unless a drain_first switch runs
        held = self._held
        if held is None:
            raise ModelUnavailable("no model is loaded; an admin can load one with POST /switch")
        held.enter()
        return held

    async def switch(self, name: str) -> SwitchResult:
        spec = self._spec(name)
        if self._switch_lock.locked():
            raise SwitchInProgress("another model switch is in progress; retry when it ends")
        async with self._switch_lock:
            self._switching.set()
            try:
                return await self._switch(spec)
            finally:
                self._switching.clear()

    async def close(self) -> None:
        async with self._switch_lock:
            if self._held is not None:
                held, self._held = self._held, None
                await self._loaded.release(held)

    async def _switch(self, spec: ModelSpec) -> SwitchResult:
        previous = self.name
        if previous == spec.name:
            return SwitchResult(previous, spec.name, 0.0)
        started = time.perf_counter()
        try:
            if self._mode == "overlap":
                await self._overlap(spec)
            else:
                await self._drain_then_load(spec)
        except ModelUnavailable:
            self._metrics.switches.labels("failed").inc()
            raise
        seconds = time.perf_counter() - started
        self._metrics.switches.labels("ok").inc()
        self._metrics.switch_latency.labels(previous or "none", spec.name).observe(seconds)
        logger.info("switched from %s to %s in %.0f ms", previous, spec.name, seconds * 1000)
        return SwitchResult(previous, spec.name, round(seconds * 1000, 1))

    def _spec(self, name: str) -> ModelSpec:
        spec = self._registry.get(name)
        if spec is None:
            raise ModelNotFound(f"no model named '{name}'", {"models": sorted(self._registry)})
        return spec

    def _install(self, loaded: Loaded) -> None:
        self._held = loaded
        info = loaded.adapter.info
        self._metrics.set_active(info.name, info.backend, info.version)

    async def _overlap(self, spec: ModelSpec) -> None:
        """Load the new model while the old one serves, then swap at once; the old one
        closes when its requests are done (unless another holder keeps it)."""
        new = await self._loaded.acquire(spec)
        old = self._held
        self._install(new)
        if old is not None:
            await self._loaded.release(old)

    async def _drain_then_load(self, spec: ModelSpec) -> None:
        """For one device that cannot hold two models: close the old one first. New requests
        wait meanwhile; the old model stays the active one until its requests are done."""
        self._ready.clear()
        old = self._held
        try:
            if old is not None:
                await old.idle.wait()
                self._held = None
                if old.holders > 1:
                    logger.warning("%s stays loaded: FALLBACK_MODEL holds it too", old.name)
                await self._loaded.release(old, wait=True)
            try:
                self._install(await self._loaded.acquire(spec))
            except ModelUnavailable:
                if old is not None:  # bring the old model back; if that fails too, serve 503
                    try:
                        self._install(await self._loaded.acquire(self._spec(old.name)))
                    except ModelUnavailable:
                        logger.exception("could not reload %s after a failed switch", old.name)
                raise
        finally:
            self._ready.set()


class _ActiveLease:
    """A request's hold on whichever model is active when it starts (a class: hot path)."""

    __slots__ = ("_deadline", "_held", "_model")

    def __init__(self, model: ActiveModel, deadline: Deadline | None):
        self._model = model
        self._deadline = deadline
        self._held: Loaded | None = None

    async def __aenter__(self) -> Adapter:
        hold = self._model.hold()
        self._held = await (hold if self._deadline is None else self._deadline.bound(hold))
        return self._held.adapter

    async def __aexit__(self, *exc_info: object) -> None:
        if self._held is not None:
            self._held.exit()
