"""A replica's part in the fleet: it follows the desired model (switching here by the same
overlap or drain-first rules as one process), reports what it serves, and makes a /switch taken
here a switch of every replica."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import asdict
from typing import Any, cast

import ray
from ray.actor import ActorHandle
from ray.exceptions import RayError

from app.errors import ServiceError, SwitchIncomplete, SwitchInProgress
from app.models.switching import ReplicaSwitch, SwitchResult
from app.ray.desired import NAMESPACE, POLL_S, DesiredModel, actor_name, switch_token
from app.service import Service
from app.settings import Settings

logger = logging.getLogger(__name__)
RECONNECT_S = 1.0  # after the desired-model actor failed a poll (it is restarted by Ray)


def desired_actor(app: str, token: str) -> ActorHandle[DesiredModel]:
    """The application's desired-model actor, started on first use (taking switches with
    `token`); Ray restarts it whenever it dies, and it reads its state back from the KV store."""
    remote = ray.remote(DesiredModel)
    handle = remote.options(
        name=actor_name(app),
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        max_restarts=-1,
        max_task_retries=-1,
        num_cpus=0,
    ).remote(app, token)
    return cast("ActorHandle[DesiredModel]", handle)


def fleet_token(settings: Settings, app: str) -> str:
    """The token the desired-model actor takes a switch with. With no admin key no one may
    switch (as over HTTP), unless the service runs open in development."""
    admin = settings.admin_api_key
    if admin is None and not settings.dev_mode:
        return secrets.token_hex(32)  # a token no other process knows: every switch refused
    return switch_token(admin.get_secret_value() if admin else None, app)


class Fleet:
    def __init__(
        self,
        service: Service,
        app: str,
        replica: str,
        generation: int,
        metrics_target: str | None,
    ):
        self._service = service
        self._app = app
        self.replica = replica
        self._token = fleet_token(service.settings, app)
        self._desired = desired_actor(app, self._token)
        self._metrics_target = metrics_target
        self._timeout_s = service.settings.fleet_switch_timeout_s
        # the newest publication acted on here: the one this replica started on, at first
        self._acted = generation
        self._heard = generation  # the newest publication the actor told of
        self._result: tuple[float | None, str | None] = (None, None)  # its load_ms, error
        self._wanted: dict[str, Any] | None = None  # a newer publication to act on
        self._new = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def catch_up(self) -> None:
        """Before this replica takes traffic: make a switch published while it loaded."""
        state = await self._desired.state.remote()
        self._want(state)
        if self._wanted is not None:
            await self._make(self._wanted)

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._poll()), asyncio.create_task(self._act())]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(RayError):
            await self._desired.leave.remote(self.replica)

    async def state(self) -> dict[str, Any]:
        """The desired model and every live replica's report (GET /fleet)."""
        state: dict[str, Any] = await self._desired.state.remote()
        return state

    async def switch(self, name: str, by: str) -> SwitchResult:
        """A switch on Ray Serve (`Admin.switch_through`): the actor publishes `name` and waits
        until every live replica serves it (or says why not); a replica that starts meanwhile
        comes up on it. The actor makes the whole switch, so it ends the same if this request
        is cut."""
        previous = self._service.active.name if self._service.active else None
        started = time.perf_counter()
        try:
            outcome = await self._desired.switch.remote(
                name, by, self.replica, self._timeout_s, self._token
            )
        except RayError as exc:
            raise SwitchIncomplete(
                "the desired-model actor failed during the switch; GET /fleet says what the "
                "fleet is set to and what each replica serves"
            ) from exc
        if outcome is None:
            raise SwitchInProgress("another model switch is in progress; retry when it ends")
        seconds = time.perf_counter() - started
        replicas = tuple(_replica(r, outcome["waiting"]) for r in outcome["replicas"])
        kept = [r for r in replicas if r.model != name]
        if kept or self.replica not in {r.replica for r in replicas}:
            why = ", ".join(f"{r.replica} ({r.error or 'kept ' + str(r.model)})" for r in kept)
            then = (
                f"the fleet stays set to {name!r}: a replica that starts loads it, and POST "
                "/switch again retries the others"
                if outcome["model"] == name
                else f"the fleet stays on {outcome['model']!r}"
            )
            raise SwitchIncomplete(
                f"{len(kept)} of {len(replicas)} replicas did not switch to {name!r}: "
                f"{why or 'this replica was not heard from'}; {then}",
                {"desired": outcome["model"], "replicas": [asdict(r) for r in replicas]},
            )
        # the switch's own time: from the publication until the last replica serves
        return SwitchResult(previous, name, round(seconds * 1000, 1), replicas)

    def _want(self, publication: dict[str, Any]) -> None:
        self._heard = publication["generation"]
        if publication["generation"] > self._acted and publication["model"] is not None:
            self._wanted = publication
            self._new.set()

    def _report(self) -> dict[str, Any]:
        active = self._service.active
        load_ms, error = self._result
        return {
            "model": active.name if active else None,
            "generation": self._acted,
            "load_ms": load_ms,
            "error": error,
            "metrics": self._metrics_target,
        }

    async def _poll(self) -> None:
        """The long poll: a heartbeat with this replica's report, and news of a switch. It
        waits for a publication newer than the last it heard of, not than the last made here:
        while a load runs, it keeps its pace."""
        while True:
            try:
                answer = await self._desired.follow.remote(
                    self.replica, self._report(), self._heard, POLL_S
                )
            except Exception:  # the actor restarting, the GCS unreachable: poll again
                logger.warning("the desired-model actor did not answer; polling again")
                await asyncio.sleep(RECONNECT_S)  # a backoff; Ray restarts the actor
                self._desired = desired_actor(self._app, self._token)
                continue
            self._want(answer)

    async def _act(self) -> None:
        """Make each newer publication here, one at a time, and report at once."""
        while True:
            await self._new.wait()
            self._new.clear()
            if self._wanted is not None:
                await self._make(self._wanted)
                with contextlib.suppress(Exception):  # the next poll reports it anyway
                    await self._desired.report.remote(self.replica, self._report())

    async def _make(self, wanted: dict[str, Any]) -> None:
        if wanted["generation"] <= self._acted:
            return
        try:
            result = await self._service.admin.follow(wanted["model"], wanted["by"])
            self._result = (result.load_ms, None)
        except ServiceError as exc:  # it keeps its model, and says why
            logger.error("could not switch to %s: %s", wanted["model"], exc.message)
            self._result = (None, exc.message)
        except Exception:  # a bug: logged, reported, and the next publication still acts
            logger.exception("switching to %s failed", wanted["model"])
            self._result = (None, "internal error")
        self._acted = wanted["generation"]


def _replica(state: dict[str, Any], waiting: list[str]) -> ReplicaSwitch:
    error = state["error"]
    if state["replica"] in waiting:
        error = "still switching when the switch timed out (FLEET_SWITCH_TIMEOUT_S)"
    return ReplicaSwitch(state["replica"], state["model"], state["load_ms"], error)
