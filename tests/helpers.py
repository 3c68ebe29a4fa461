"""Small helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp

from app.main import create_app
from app.pipeline import Pipeline
from app.settings import Settings

# Banking77 (CC-BY-4.0) is read from beside the repo, as a user's own data would be; never copied.
BANKING77_DIR = Path(
    os.environ.get("BANKING77_DIR", Path(__file__).resolve().parents[2] / "shared/data/banking77")
)
USER_KEY = "user-key-for-tests"
ADMIN_KEY = "admin-key-for-tests"


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app for settings, with its lifespan (model loaded) for the duration."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@asynccontextmanager
async def client_of(app: FastAPI, key: str | None = USER_KEY) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=headers
    ) as client:
        yield client


@contextmanager
def serving(app: ASGIApp) -> Iterator[str]:
    """An ASGI app behind a real uvicorn on 127.0.0.1 (a free port), in a thread; its URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    poll_until(lambda: server.started or not thread.is_alive(), timeout_s=60)
    assert server.started, "the server did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


async def wait_until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Yield to the event loop until condition holds; fail after timeout_s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0)


def poll_until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """For another thread's progress: check every 10 ms; fail after timeout_s."""
    deadline = time.monotonic() + timeout_s
    pause = threading.Event()
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        pause.wait(0.01)


def sample(pipeline: Pipeline, name: str, **labels: str) -> float:
    """A metric sample's value from the pipeline's registry (0 when absent)."""
    return pipeline.metrics.registry.get_sample_value(name, labels) or 0.0


def read_log(settings: Settings, pipeline: Pipeline | None = None) -> list[dict[str, Any]]:
    """The benchmark log's rows, after the pipeline's writer caught up."""
    if pipeline is not None:
        pipeline.benchmark_summary()  # waits for pending rows
    return [json.loads(line) for line in settings.benchmark_log.read_text().splitlines()]


def parse_sse(text: str) -> list[Any]:
    """The payloads of a server-sent event stream, JSON-decoded except `[DONE]`."""
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        assert block.startswith("data: "), block
        payload = block[len("data: ") :]
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events
