"""One replica of the service on Ray Serve: the same app and settings as one process, with its
own benchmark log file, its own /metrics port, and its part in the fleet's switch."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from wsgiref.simple_server import WSGIServer

import ray
import torch
from fastapi import FastAPI
from prometheus_client import start_http_server
from ray import serve

from app.banking.intents import IntentSet
from app.main import create_app
from app.models.registry import build_registry
from app.ray import routes
from app.ray.fleet import Fleet, desired_actor, fleet_token
from app.service import Service
from app.settings import Settings
from app.telemetry.benchlog import BenchmarkLog
from app.telemetry.metrics import Metrics

logger = logging.getLogger(__name__)


def replica_log(path: Path, replica: str) -> Path:
    """`logs/benchmarks.jsonl` -> `logs/benchmarks.<replica>.jsonl`."""
    return path.with_name(f"{path.stem}.{replica}{path.suffix}")


@serve.ingress()  # the app is built per replica, in __serve_build_asgi_app__
class Replica:
    replica: str
    _settings: Settings
    _service: Service
    _fleet: Fleet
    _exporter: WSGIServer

    # Ray Serve awaits an async constructor of an ingress class (mypy wants __init__ sync)
    async def __init__(self, settings: Settings) -> None:  # type: ignore[misc]
        replica_id = serve.get_replica_context().replica_id
        self.replica = replica_id.unique_id
        app = replica_id.deployment_id.app_name  # each Serve application has its own fleet
        desired = await desired_actor(app, fleet_token(settings, app)).state.remote()
        self._settings = settings = _starting(settings, desired["model"])
        # torch's threads as Ray reserved cores for this replica: two replicas on two cores
        # with two threads each would spin against each other (Ray leaves OMP_NUM_THREADS unset)
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
        if cpus:
            torch.set_num_threads(max(1, int(cpus)))
        metrics = Metrics()
        log = BenchmarkLog(
            replica_log(settings.benchmark_log, self.replica),
            settings.benchmark_every,
            metrics.log_write_errors.inc,
            family=settings.benchmark_log,
            stamp={"replica": self.replica},
            priority=settings.recommend,
        )
        self._service = Service(settings, IntentSet.load(), metrics, log)
        # each replica's own metrics, on a port of its own: one Prometheus target per replica
        self._exporter, _ = start_http_server(
            0, addr=settings.replica_metrics_host, registry=metrics.registry
        )
        host = settings.replica_metrics_host
        if host in ("0.0.0.0", "::", ""):
            host = ray.util.get_node_ip_address()
        target = f"{host}:{self._exporter.server_port}"
        self._fleet = Fleet(self._service, app, self.replica, desired["generation"], target)
        self._service.admin.switch_through(self._fleet.switch)

    def __serve_build_asgi_app__(self) -> FastAPI:
        app = create_app(self._settings, self._service, alongside=self._in_fleet)
        app.state.fleet = self._fleet
        app.include_router(routes.router)
        return app

    @asynccontextmanager
    async def _in_fleet(self) -> AsyncIterator[None]:
        """The replica's part in its fleet, while its service serves."""
        await self._fleet.catch_up()  # a switch published while the model loaded
        await self._fleet.start()
        gc.collect()  # as `bankllm serve` does: the collector's full passes stall
        gc.freeze()  # requests ~100 ms with torch and the model alive
        try:
            yield
        finally:
            await self._fleet.close()
            self._exporter.shutdown()


def _starting(settings: Settings, desired: str | None) -> Settings:
    """The settings a replica starts with: ACTIVE_MODEL is the model the fleet was switched
    to, if any, and if these settings still register it (a redeploy may have dropped it); a
    shadow that was promoted to it is no shadow."""
    if desired is None or desired == settings.active_model:
        return settings
    if desired not in build_registry(settings):
        logger.warning(
            "the fleet was set to %r, which these settings do not register; starting on %r",
            desired,
            settings.active_model,
        )
        return settings
    shadow = None if settings.shadow_model == desired else settings.shadow_model
    return settings.model_copy(update={"active_model": desired, "shadow_model": shadow})
