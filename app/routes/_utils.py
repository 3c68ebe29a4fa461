"""Helpers for routes: cancel work when the client goes away, and the SSE response."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from typing import Any, TypeVar

import anyio
import pydantic_core
from fastapi import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.types import Receive, Scope, Send

from app.errors import ClientDisconnected

T = TypeVar("T")


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await work in this task, cancelling it if the client disconnects first.

    The work runs here, and a watcher task cancels this task when the client goes away. The
    watcher starts one turn of the event loop after the work, so only work that waits gets
    one: an answer ready without waiting (the echo model's) has nothing to cancel, and a task
    per request was a fifth of the time such a request took."""
    current = asyncio.current_task()
    assert current is not None
    watcher: asyncio.Future[None] | None = None
    waiting = True  # a callback scheduled just as the work ends must not cancel what follows

    def client_left(done: asyncio.Future[None]) -> None:
        if waiting and not done.cancelled() and done.exception() is None:
            current.cancel("client disconnected")

    def watch() -> None:
        nonlocal watcher
        watcher = asyncio.ensure_future(_disconnected(request))
        watcher.add_done_callback(client_left)

    start = asyncio.get_running_loop().call_soon(watch)
    try:
        return await work
    except asyncio.CancelledError:
        if watcher is not None and watcher.done() and not watcher.cancelled():
            current.uncancel()  # our cancel, now told as ClientDisconnected
            raise ClientDisconnected(
                "the client closed the connection; generation cancelled"
            ) from None
        raise
    finally:
        waiting = False
        start.cancel()
        if watcher is not None:
            watcher.cancel()


class FastJSONResponse(JSONResponse):
    """JSON rendered by pydantic-core, in Rust: compact UTF-8 as Starlette's, about 5x faster
    than `json.dumps` for an answer's fields (a few microseconds of every request)."""

    def render(self, content: Any) -> bytes:
        return pydantic_core.to_json(content)


def sse(data: Any) -> str:
    """One server-sent event with a JSON (or literal [DONE]) payload."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {payload}\n\n"


class EventStreamResponse(StreamingResponse):
    """SSE that stops and closes its source as soon as the client disconnects, on every
    ASGI server (Starlette only watches for it below ASGI spec 2.4)."""

    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterator[str], source: AsyncGenerator[Any, None]):
        """`content` encodes `source` (the pipeline's events); both are closed at the end, the
        source too when the client left before `content` ever started."""
        super().__init__(content, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._content = content
        self._source = source

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as group:

                async def stream() -> None:
                    await self.stream_response(send)
                    group.cancel_scope.cancel()

                group.start_soon(stream)
                await self.listen_for_disconnect(receive)
                group.cancel_scope.cancel()
        finally:
            aclose = getattr(self._content, "aclose", None)
            if aclose is not None:
                await aclose()
            await self._source.aclose()  # a no-op when the content closed it already
