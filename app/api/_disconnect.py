"""Cancel a request's work when its client goes away: `cancel_on_disconnect`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from fastapi import Request

from app.errors import ClientDisconnected

T = TypeVar("T")


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await work in this task, cancelling it if the client disconnects first: the client's
    leaving is then ClientDisconnected, and a cancellation from elsewhere stays what it is."""
    current = asyncio.current_task()
    assert current is not None
    watcher = asyncio.create_task(_cancel_when_gone(request, current))
    try:
        return await work
    except asyncio.CancelledError:
        if _client_left(watcher):
            current.uncancel()  # our cancel, now told as ClientDisconnected
            raise ClientDisconnected(
                "the client closed the connection; generation cancelled"
            ) from None
        raise
    finally:
        watcher.cancel()


async def _cancel_when_gone(request: Request, task: asyncio.Task[Any]) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
    task.cancel("client disconnected")


def _client_left(watcher: asyncio.Task[None]) -> bool:
    """Whether the watcher saw the client go (a watcher that failed saw nothing)."""
    return watcher.done() and not watcher.cancelled() and watcher.exception() is None
