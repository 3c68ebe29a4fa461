"""A real local Ray cluster per test module, bound to 127.0.0.1, and the service deployed on it."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import ray
from ray import serve

from app.ray.app import APP, Scale, application
from app.ray.desired import forget
from app.settings import Settings

Deploy = Callable[..., Any]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def ray_url() -> Iterator[str]:
    """A local cluster (4 logical CPUs on this machine's cores) with Serve's proxy on a free
    port of 127.0.0.1; its URL."""
    with pytest.MonkeyPatch.context() as env:
        # replicas report their load each 0.5 s (Ray's default: 10 s), for the autoscaling test
        for side in ("REPLICA", "HANDLE"):
            env.setenv(f"RAY_SERVE_{side}_AUTOSCALING_METRIC_PUSH_INTERVAL_S", "0.5")
        ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()


@contextmanager
def deployed(settings: Settings, scale: Scale | None = None) -> Iterator[None]:
    """The service on the cluster until the block ends; its fleet state forgotten after."""
    serve.run(application(settings, scale), name=APP, route_prefix="/")
    try:
        yield
    finally:
        serve.delete(APP)
        forget(APP)


async def fleet(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/fleet")
    assert response.status_code == 200, response.text
    state: dict[str, Any] = response.json()
    return state


async def until(
    check: Callable[[], Awaitable[bool]], timeout_s: float, every_s: float = 0.2
) -> None:
    """Poll a condition of the cluster (a replica restarted by Ray, rows written by another
    process: nothing here can notify us) until it holds; AssertionError past the timeout."""
    end = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > end:
            raise AssertionError(f"not so within {timeout_s} s")
        await asyncio.sleep(every_s)
