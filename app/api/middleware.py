"""Refuse request bodies over the size limit with 413 before they are read whole, and bodies
that arrive too slowly (a slowloris) with 408."""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import BodyTimeout, PayloadTooLarge


class BodyLimits:
    """A body declared or found too large raises PayloadTooLarge, and one not whole within
    `timeout_s` of the request's arrival raises BodyTimeout, where the route reads it, so the
    one error handler answers it (and records it, on a generating route). Once the body is
    whole, waits for the client (a disconnect) are not bounded."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = False
        for name, value in scope["headers"]:  # lower-case names, by the ASGI spec
            if name == b"content-length":
                too_large = value.isdigit() and int(value) > self.max_bytes
                break
        received = 0
        whole = False
        by = asyncio.get_running_loop().time() + self.timeout_s

        async def limited() -> Message:
            nonlocal received, whole
            if too_large:  # refuse before a byte of the body is read
                raise PayloadTooLarge(self.max_bytes)
            if whole:
                return await receive()
            try:
                async with asyncio.timeout_at(by):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout(self.timeout_s) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                whole = not message.get("more_body", False)
                if received > self.max_bytes:  # a chunked body with no Content-Length
                    raise PayloadTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited, send)
