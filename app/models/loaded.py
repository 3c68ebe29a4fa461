"""The loaded adapters: one per model name, shared by whoever holds it (the active slot, the
fallback, a shadow) and closed when the last holder lets go and its requests are done."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from app.backends.catalog import is_remote, load_adapter
from app.backends.protocol import Adapter, Message, ModelSpec, SamplingParams, collect
from app.banking.intents import IntentSet
from app.errors import ModelUnavailable, UpstreamAuthRejected, UpstreamError, UpstreamRefused

logger = logging.getLogger(__name__)
# Every model answers one short greedy question before it serves: the path traffic takes.
WARM_UP = ((Message("user", "Hello"),), SamplingParams(max_tokens=2, temperature=0.0))


def _set_event() -> asyncio.Event:
    event = asyncio.Event()
    event.set()
    return event


@dataclass(eq=False)
class Loaded:
    """One loaded adapter with its holders and its requests in flight."""

    name: str
    adapter: Adapter
    degraded: str | None = None  # why it may not serve (a failed warm-up), until it answers
    holders: int = 0
    in_flight: int = 0
    idle: asyncio.Event = field(default_factory=_set_event)  # set while nothing is in flight
    _waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)

    def lease(self) -> Lease:
        """The adapter for one request; it stays open until the lease ends."""
        return Lease(self)

    def enter(self) -> None:
        self.in_flight += 1
        self.idle.clear()
        if self._waiters:
            self._wake()

    def exit(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self.idle.set()

    async def until_in_flight(self, count: int) -> None:
        """Resolves once `count` requests hold this adapter at the same time."""
        if self.in_flight < count:
            future = asyncio.get_running_loop().create_future()
            self._waiters.append((count, future))
            await future

    def _wake(self) -> None:
        for count, future in [w for w in self._waiters if w[0] <= self.in_flight]:
            self._waiters.remove((count, future))
            if not future.done():
                future.set_result(None)


class Lease:
    """A request's hold on a loaded adapter. A class, not a generator-based context manager:
    it runs once per request, on the hot path."""

    __slots__ = ("_loaded",)

    def __init__(self, loaded: Loaded):
        self._loaded = loaded

    async def __aenter__(self) -> Adapter:
        self._loaded.enter()
        return self._loaded.adapter

    async def __aexit__(self, *exc_info: object) -> None:
        self._loaded.exit()


class LoadedAdapters:
    def __init__(self, intents: IntentSet):
        self._intents = intents
        self._loaded: dict[str, Loaded] = {}
        self._loading = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()

    def get(self, name: str) -> Loaded | None:
        return self._loaded.get(name)

    async def acquire(self, spec: ModelSpec, *, degraded_ok: bool = False) -> Loaded:
        """The spec's adapter, loaded and warmed up unless it already is; raises
        ModelUnavailable when it cannot load. With `degraded_ok`, a remote model whose
        warm-up fails upstream (a timeout, a 5xx, no connection) is kept, marked degraded: a
        transient fault at start must not become an outage. Each acquire needs its `release`."""
        async with self._loading:
            loaded = self._loaded.get(spec.name)
            if loaded is None:
                loaded = await self._load(spec, degraded_ok)
                self._loaded[spec.name] = loaded
            loaded.holders += 1
            return loaded

    async def release(self, loaded: Loaded, *, wait: bool = False) -> None:
        """Let go of an adapter; the last holder's release closes it once its requests are
        done, in the background unless `wait`."""
        loaded.holders -= 1
        if loaded.holders > 0:
            return
        if self._loaded.get(loaded.name) is loaded:
            del self._loaded[loaded.name]
        task = asyncio.create_task(self._close_when_idle(loaded))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        if wait:
            await asyncio.shield(task)  # a cancelled waiter must not leave the model open

    async def close(self) -> None:
        """Close every adapter, held or not, after its requests."""
        for loaded in list(self._loaded.values()):
            loaded.holders = 1
            await self.release(loaded)
        if self._closing:
            await asyncio.gather(*self._closing)

    async def _load(self, spec: ModelSpec, degraded_ok: bool) -> Loaded:
        adapter = await load_adapter(spec, self._intents)
        try:
            await collect(adapter.stream(*WARM_UP))
        except UpstreamError as exc:
            # Google refused us (a bad key, an unknown model): no wait will fix that
            answered = isinstance(exc, UpstreamRefused | UpstreamAuthRejected)
            if answered or not (degraded_ok and is_remote(spec.backend)):
                await adapter.close()
                raise ModelUnavailable(f"model {spec.name!r} failed its warm-up: {exc}") from exc
            logger.warning("%s serves degraded: its warm-up failed: %s", spec.name, exc.message)
            return Loaded(spec.name, adapter, degraded=f"warm-up failed: {exc.message}")
        except Exception as exc:
            await adapter.close()
            raise ModelUnavailable(f"model {spec.name!r} failed its warm-up: {exc}") from exc
        return Loaded(spec.name, adapter)

    @staticmethod
    async def _close_when_idle(loaded: Loaded) -> None:
        await loaded.idle.wait()
        try:
            await loaded.adapter.close()
        except Exception:
            logger.exception("closing %s failed", loaded.name)
