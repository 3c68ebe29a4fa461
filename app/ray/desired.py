"""The fleet's desired model: one named, detached Ray actor per application. What it is set to is
persisted in Ray's KV store (in the GCS), so it outlives a restart of the actor itself, of the
Serve controller or of any replica; a replica that starts (a restart, an autoscaled one) comes up
on it. Every replica long-polls it, which is also how it knows which replicas are alive, and a
/switch taken by any replica publishes here and waits here until every live replica answered.

The actor is plain Python on asyncio (one event loop, no locks); it imports nothing of the
service, so it starts in a bare worker at once."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import ray
from ray.experimental import internal_kv

NAMESPACE = "bankllm"  # Ray namespace of the actor, and the KV store's namespace of its state
POLL_S = 2.0  # a replica's long poll returns at least this often: its heartbeat
GONE_S = 3.0  # a replica not heard from for this long after a poll is gone (killed, scaled in)


def switch_token(admin_key: str | None, app: str) -> str:
    """What the actor takes a switch with: an HMAC of the application's name under the admin
    key, known to the replicas (they hold the key) and to no one else."""
    key = (admin_key or "open").encode()
    return hmac.new(key, f"bankllm-switch:{app}".encode(), hashlib.sha256).hexdigest()


def actor_name(app: str) -> str:
    return f"desired-model:{app}"


def _key(app: str) -> bytes:
    return f"desired:{app}".encode()


def forget(app: str) -> None:
    """End the application's desired model (a deliberate stop, not a restart): its actor and
    its saved state, so that the next deployment starts on ACTIVE_MODEL."""
    with contextlib.suppress(ValueError):  # ValueError: it never started
        ray.kill(ray.get_actor(actor_name(app), namespace=NAMESPACE), no_restart=True)
    internal_kv._internal_kv_del(_key(app), namespace=NAMESPACE)


@dataclass
class ReplicaState:
    """What a replica reports on each poll, and when it was last heard from."""

    replica: str
    model: str | None = None  # what it serves now (None while nothing loaded)
    generation: int = 0  # the newest publication it has acted on (or started with)
    load_ms: float | None = None  # its load and swap for that publication
    error: str | None = None  # why that publication did not take, if it did not
    metrics: str | None = None  # host:port of its own /metrics
    polls: int = 0  # its long polls open now
    seen: float = field(default_factory=time.monotonic)

    def alive(self, now: float) -> bool:
        return self.polls > 0 or now - self.seen < GONE_S

    def public(self) -> dict[str, Any]:
        state = asdict(self)
        del state["polls"], state["seen"]
        return state


class DesiredModel:
    """Decorated with `ray.remote` where it is started (app.ray.fleet), so this module stays a
    plain class for the type checker and for reading."""

    def __init__(self, app: str, switch_token: str) -> None:
        self._key = _key(app)
        self._switch_token = switch_token.encode()
        raw = internal_kv._internal_kv_get(self._key, namespace=NAMESPACE)
        saved = json.loads(raw) if raw else {}
        self._generation: int = saved.get("generation", 0)
        self._model: str | None = saved.get("model")
        self._by: str | None = saved.get("by")
        self._replicas: dict[str, ReplicaState] = {}
        self._changed = asyncio.Condition()  # a publication, a report or a poll's end
        self._pending: int | None = None  # the publication a /switch waits on
        self._started = time.monotonic()

    async def state(self) -> dict[str, Any]:
        """The desired model, and every live replica's report."""
        return {
            "generation": self._generation,
            "model": self._model,
            "by": self._by,
            "switching": self._pending is not None,
            "replicas": [r.public() for r in self._alive()],
        }

    async def switch(
        self, model: str, by: str, caller: str, timeout_s: float, token: str
    ) -> dict[str, Any] | None:
        """A /switch, made here from start to end so that it ends the same whether or not its
        caller stays: publish `model`, wait until every live replica has acted on it (or
        `timeout_s`), and if every replica reported that it could not, set the fleet back to
        the model it was set to. None while another switch runs. The outcome: the model the
        fleet is set to now, every live replica's report, and those still switching at the
        end (a caller missing from the reports was cut short by this actor's restart).
        Only with the token a replica derives from the admin key: a pod that reaches the actor
        cannot skip the admin key, the gate and the audit trail."""
        if not hmac.compare_digest(token.encode(), self._switch_token):
            raise PermissionError("a switch needs the token derived from the admin key")
        if self._pending is not None:
            return None
        self._pending = self._generation + 1  # taken before the first await
        previous = self._model or self._serving()
        try:
            generation = await self._publish(model, by)
            outcome = await self._confirmed(generation, caller, timeout_s)
            failed = [r for r in outcome["replicas"] if r["model"] != model]
            everyone = outcome["replicas"] and len(failed) == len(outcome["replicas"])
            if everyone and not outcome["waiting"] and previous not in (None, model):
                back = await self._publish(previous, by)  # nothing switched: back where it was
                await self._confirmed(back, caller, timeout_s)
                outcome["model"] = previous
            return outcome
        finally:
            self._pending = None

    async def report(self, replica: str, state: dict[str, Any]) -> None:
        self._update(replica, state)
        await self._notify()

    async def follow(
        self, replica: str, state: dict[str, Any], known: int, timeout_s: float = POLL_S
    ) -> dict[str, Any]:
        """A replica's long poll: its report in, the desired model out, once it differs from
        the publication `known` or after `timeout_s` (the replica polls again at once)."""
        entry = self._update(replica, state)
        entry.polls += 1
        try:
            async with self._changed:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self._generation != known), timeout_s
                )
        except TimeoutError:
            pass
        finally:
            entry.polls -= 1
            entry.seen = time.monotonic()
        return {"generation": self._generation, "model": self._model, "by": self._by}

    async def leave(self, replica: str) -> None:
        """A replica that stops says so, and no switch waits for it."""
        self._replicas.pop(replica, None)
        await self._notify()

    async def _confirmed(self, generation: int, caller: str, timeout_s: float) -> dict[str, Any]:
        """Wait until every live replica has acted on publication `generation` (each serving
        its model now, or saying why not), or `timeout_s`. A restarted actor knows no replica
        until each polls again: it waits until the caller and one whole round of polls have
        been heard, so that it never counts an empty fleet as switched."""

        def settled() -> bool:
            if time.monotonic() - self._started < POLL_S + GONE_S or caller not in self._replicas:
                return False
            return all(r.generation >= generation for r in self._alive())

        with contextlib.suppress(TimeoutError):
            async with self._changed:
                await asyncio.wait_for(self._until(settled), timeout_s)
        replicas = self._alive()
        return {
            "model": self._model,
            "replicas": [r.public() for r in replicas],
            "waiting": [r.replica for r in replicas if r.generation < generation],
        }

    async def _until(self, settled: Callable[[], bool]) -> None:
        # re-checked after every report, and twice a second: a replica that died stops being
        # alive without anything happening
        while not settled():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 0.5)

    def _alive(self) -> list[ReplicaState]:
        now = time.monotonic()
        for gone in [r for r in self._replicas.values() if not r.alive(now)]:
            del self._replicas[gone.replica]
        return sorted(self._replicas.values(), key=lambda r: r.replica)

    def _update(self, replica: str, state: dict[str, Any]) -> ReplicaState:
        entry = self._replicas.get(replica) or ReplicaState(replica)
        self._replicas[replica] = entry
        # A replica's poll and its report after a switch may arrive in either order (an async
        # actor does not keep them in order): a report older than the one held is a heartbeat.
        if state["generation"] >= entry.generation:
            for name in ("model", "generation", "load_ms", "error", "metrics"):
                setattr(entry, name, state.get(name))
        entry.seen = time.monotonic()
        return entry

    async def _publish(self, model: str, by: str) -> int:
        """The next publication, saved before anyone hears of it."""
        generation = self._generation + 1
        saved = {"generation": generation, "model": model, "by": by}
        internal_kv._internal_kv_put(
            self._key, json.dumps(saved).encode(), overwrite=True, namespace=NAMESPACE
        )
        self._generation, self._model, self._by = generation, model, by
        await self._notify()
        return generation

    def _serving(self) -> str | None:
        """The one model every live replica serves, if they agree (the fleet before its first
        switch is on ACTIVE_MODEL, which only the replicas know)."""
        models = {r.model for r in self._alive()}
        return models.pop() if len(models) == 1 else None

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()
