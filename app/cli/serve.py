"""`bankllm serve`: run the HTTP service with uvicorn, and set what is process-wide."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from app.main import create_app
from app.service import Service
from app.serving.drain import AFTER_CUT_S, Drain
from app.settings import Settings, get_settings

logger = logging.getLogger(__name__)


def add_parser(commands: Any) -> None:
    p: argparse.ArgumentParser = commands.add_parser("serve", help="serve the HTTP API")
    p.add_argument("--env-file", help="a .env file, e.g. .env.custom (the environment wins)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    ray = p.add_argument_group(
        "Ray Serve", "replicas of the same app on Ray Serve (needs the `ray` extra: .[ray])"
    )
    ray.add_argument("--ray", action="store_true", help="serve on Ray Serve")
    size = ray.add_mutually_exclusive_group()
    size.add_argument("--replicas", type=int, help="this many replicas (default: 1)")
    size.add_argument("--autoscale", metavar="MIN:MAX", help="autoscale between MIN and MAX")
    ray.add_argument(
        "--replica-cpus", type=float, default=1.0, help="CPUs reserved per replica (default: 1)"
    )
    ray.add_argument(
        "--address",
        help="join the Ray cluster there (e.g. ray://head:10001, or auto); default: start a "
        "local one that stops with this command",
    )
    p.set_defaults(run=run)


def freeze_after_start(app: FastAPI) -> None:
    """Once the lifespan has loaded the model, move everything alive (torch, the model,
    FastAPI) out of the collector's full passes, which otherwise stall requests ~100 ms."""
    started = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: FastAPI) -> AsyncIterator[Any]:
        async with started(application) as state:
            gc.collect()
            gc.freeze()
            yield state

    app.router.lifespan_context = lifespan


class GracefulServer(uvicorn.Server):
    """uvicorn's server, stopped the service's way. On SIGTERM (or Ctrl-C) it keeps listening
    while the service drains: /health answers 503 `draining` so load balancers stop sending,
    new requests get 503 `draining`, those in flight finish within SHUTDOWN_GRACE_S and are cut
    past it. Only then does uvicorn stop: connections close, the lifespan closes the log, and
    the process exits 0 (uvicorn would re-raise the signal, and so exit 143). A second signal
    cuts the requests at once."""

    def __init__(self, config: uvicorn.Config, app: FastAPI):
        super().__init__(config)
        self._app = app
        self._loop: asyncio.AbstractEventLoop | None = None
        self._asked = False  # whether a signal has asked for the stop
        self._drained: asyncio.Task[None] | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        service: Service | None = getattr(self._app.state, "service", None)
        if self._loop is None or service is None or self.should_exit:
            # not serving yet, or stopping already: uvicorn's rule (a second Ctrl-C forces)
            self.force_exit = self.should_exit and sig == signal.SIGINT
            self.should_exit = True
        elif not self._asked:
            self._asked = True
            self._loop.call_soon_threadsafe(self._stop, service.drain)
        else:
            self._loop.call_soon_threadsafe(service.drain.cut)

    def _stop(self, drain: Drain) -> None:
        self._drained = asyncio.create_task(self._drain(drain))

    async def _drain(self, drain: Drain) -> None:
        try:
            cut = await drain.run()
            logger.info("drained: %d request(s) cut at the end of the grace period", cut)
        finally:
            self.should_exit = True


def run(args: argparse.Namespace) -> int:
    try:
        settings = get_settings(args.env_file)
    except ValidationError as exc:  # a bad setting: say which, without a traceback
        print(f"bankllm serve: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("app").setLevel(settings.log_level.upper())
    for chatty in ("httpx", "httpx2"):  # one INFO line per upstream request: metrics say it
        logging.getLogger(chatty).setLevel(logging.WARNING)
    if args.ray:
        return _serve_on_ray(args, settings)
    if args.replicas is not None or args.autoscale is not None or args.address is not None:
        print("bankllm serve: --replicas, --autoscale and --address need --ray", file=sys.stderr)
        return 2
    app = create_app(settings)
    freeze_after_start(app)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=settings.log_level.lower(),
        # uvicorn's access lines are INFO; above that it would still build each one's
        # fields (the path quoted again) on every response, for nothing printed
        access_log=logging.getLevelName(settings.log_level.upper()) <= logging.INFO,
        timeout_graceful_shutdown=int(AFTER_CUT_S),  # for a send that never ends
    )
    GracefulServer(config, app).run()
    return 0


def _serve_on_ray(args: argparse.Namespace, settings: Settings) -> int:
    try:
        from app.ray.app import Scale
        from app.ray.run import serve_on_ray
    except ImportError as exc:
        print(
            f"bankllm serve --ray: {exc}; install the extra: pip install '.[ray]'",
            file=sys.stderr,
        )
        return 2
    if args.replicas is not None and args.replicas < 1:
        print("bankllm serve: --replicas must be at least 1", file=sys.stderr)
        return 2
    try:
        scale = Scale.parse(args.replicas, args.autoscale, args.replica_cpus)
    except ValueError as exc:
        print(f"bankllm serve: {exc}", file=sys.stderr)
        return 2
    return serve_on_ray(settings, args.host, args.port, scale, args.address)
