"""`bankllm serve`: run the HTTP service with uvicorn, and set what is process-wide."""

from __future__ import annotations

import argparse
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI

from app.main import create_app
from app.settings import get_settings


def add_parser(commands: Any) -> None:
    p: argparse.ArgumentParser = commands.add_parser("serve", help="serve the HTTP API")
    p.add_argument("--env-file", help="a .env file, e.g. .env.custom (the environment wins)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
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


def run(args: argparse.Namespace) -> int:
    settings = get_settings(args.env_file)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("app").setLevel(settings.log_level.upper())
    for chatty in ("httpx", "httpx2"):  # one INFO line per upstream request: metrics say it
        logging.getLogger(chatty).setLevel(logging.WARNING)
    app = create_app(settings)
    freeze_after_start(app)
    uvicorn.run(app, host=args.host, port=args.port, log_level=settings.log_level.lower())
    return 0
