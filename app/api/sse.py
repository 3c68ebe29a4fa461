"""Server-sent events, as both APIs stream: the first event awaited before the response starts
(an error before it keeps its HTTP status), a `data:` line per encoded event, an error after
the first byte as an event of its own, and `[DONE]`."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from contextlib import aclosing
from typing import Any

import anyio
from fastapi import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from app.api._disconnect import cancel_on_disconnect
from app.errors import InternalError, ServiceError
from app.serving.results import StreamEvent

logger = logging.getLogger(__name__)
Encode = Callable[[StreamEvent], Iterable[Any]]  # an event's payloads, in order
ErrorBody = Callable[[ServiceError], dict[str, Any]]


async def event_stream(
    request: Request,
    events: AsyncGenerator[StreamEvent, None],
    encode: Encode,
    error_body: ErrorBody,
) -> EventStreamResponse:
    """The pipeline's events as SSE, once the first has come (or its error raised here)."""
    try:
        first = await cancel_on_disconnect(request, anext(events))
    except BaseException:
        await events.aclose()
        raise
    return EventStreamResponse(_lines(first, events, encode, error_body), events)


async def _lines(
    first: StreamEvent,
    events: AsyncGenerator[StreamEvent, None],
    encode: Encode,
    error_body: ErrorBody,
) -> AsyncIterator[str]:
    async with aclosing(events):
        event: StreamEvent | None = first
        try:
            while event is not None:
                for payload in encode(event):
                    yield sse(payload)
                event = await anext(events, None)
        except ServiceError as exc:
            yield sse(error_body(exc))
        except Exception:
            logger.exception("stream failed")
            yield sse(error_body(InternalError()))
        yield sse("[DONE]")


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
