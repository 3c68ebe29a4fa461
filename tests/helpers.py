"""Small helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import openai
import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr
from starlette.types import ASGIApp

from app.backends.custom.gpt.train import TrainConfig
from app.backends.protocol import Adapter, Completion, Message, SamplingParams, collect
from app.main import create_app
from app.service import Service
from app.settings import Settings
from app.telemetry.pseudonyms import Pseudonyms

ROOT = Path(__file__).resolve().parents[1]  # the repository

# Banking77 (CC-BY-4.0) is read from beside the repo, as a user's own data would be; never copied.
BANKING77_DIR = Path(
    os.environ.get("BANKING77_DIR", Path(__file__).resolve().parents[2] / "shared/data/banking77")
)
USER_KEY = "user-key-for-tests"
ADMIN_KEY = "admin-key-for-tests"
EVAL_KEY = "eval-key-for-tests"
PSEUDONYM_SECRET = "pseudonym-secret-for-tests"
ADMIN_ID = Pseudonyms.keyed(SecretStr(PSEUDONYM_SECRET)).key_id(ADMIN_KEY)  # the trail's `by`
# The one tiny training config: seconds on a CPU. Tests that need more `replace` fields of it.
TINY = TrainConfig(
    n_layer=1,
    n_head=2,
    n_embd=32,
    block_size=128,
    vocab_size=300,
    epochs=1,
    batch_size=32,
    warmup_steps=5,
    reply_steps=5,
    reply_repeats=8,
    dropout=0.0,
    ema_decay=0.0,
    val_fraction=0.0,
)


def error_body(type_: str, message: str, details: Any = None) -> dict[str, Any]:
    """Our error envelope, as every route but /v1 answers."""
    return {"error": {"type": type_, "message": message, "details": details}}


@asynccontextmanager
async def openai_client(url: str, key: str = USER_KEY) -> AsyncIterator[openai.AsyncOpenAI]:
    """The official SDK against our /v1, without its retries."""
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0) as client:
        yield client


def ask(text: str) -> tuple[Message, ...]:
    """A conversation of one user turn."""
    return (Message("user", text),)


async def answer(adapter: Adapter, text: str, params: SamplingParams) -> Completion:
    """An adapter's whole answer to one question, read from its stream."""
    return await collect(adapter.stream(ask(text), params))


class Started(NamedTuple):
    """A started app, a client of it with the user key, and its service."""

    app: FastAPI
    client: httpx.AsyncClient
    service: Service


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app for settings, with its lifespan (model loaded) for the duration."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@asynccontextmanager
async def started(settings: Settings) -> AsyncIterator[Started]:
    async with running(settings) as app, client_of(app) as client:
        yield Started(app, client, app.state.service)


@asynccontextmanager
async def client_of(app: FastAPI, key: str | None = USER_KEY) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=headers
    ) as client:
        yield client


class _Server(uvicorn.Server):
    """Tells, by an event, when it has started (or failed to)."""

    def __init__(self, config: uvicorn.Config):
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: Any = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self.ready.set()

    def run(self, sockets: Any = None) -> None:
        try:
            super().run(sockets)
        finally:
            self.ready.set()  # a lifespan that failed never reaches startup


@contextmanager
def serving(app: ASGIApp) -> Iterator[str]:
    """An ASGI app behind a real uvicorn on 127.0.0.1 (a free port), in a thread; its URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = _Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert server.ready.wait(timeout=120), "the server did not start in time"
    assert server.started, "the server did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def sample(service: Service, name: str, **labels: str) -> float:
    """A metric sample's value from the service's registry (0 when absent)."""
    return service.metrics.registry.get_sample_value(name, labels) or 0.0


def read_log(
    settings: Settings, service: Service | None = None, *, audit: bool = False
) -> list[dict[str, Any]]:
    """The benchmark log's rows, after the service's writer caught up; with `audit`, then
    the audit trail's (its own file, written as each action is)."""
    if service is not None:
        service.log.flush()  # waits for pending rows
    rows = [json.loads(line) for line in settings.benchmark_log.read_text().splitlines()]
    if audit and settings.audit_path.exists():
        rows += [json.loads(line) for line in settings.audit_path.read_text().splitlines()]
    return rows


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
