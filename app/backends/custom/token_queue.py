"""Tokens on their way from the decoding thread to the request that waits for them on its
event loop, in order, a step's tokens for one loop woken once."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref

from app.backends.custom.gpt.batching import Emit

Item = int | BaseException | None  # a token, the end (None), or the decoder's failure


class _Outbox:
    """Tokens on their way from the decoding thread to one event loop. A step of 16 rows wakes
    the loop once, not 16 times: the first token queued schedules a flush, the rest of the
    step's ride along with it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._items: list[tuple[asyncio.Queue[Item], Item]] = []

    def put(self, queue: asyncio.Queue[Item], item: Item) -> None:
        with self._lock:
            self._items.append((queue, item))
            if len(self._items) > 1:  # a flush is already on its way
                return
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting
            self._loop.call_soon_threadsafe(self._flush)

    def _flush(self) -> None:
        with self._lock:
            items, self._items = self._items, []
        for queue, item in items:
            queue.put_nowait(item)


_OUTBOXES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Outbox] = (
    weakref.WeakKeyDictionary()
)


class TokenQueue:
    """Hands tokens from the decoding thread to the request's event loop, in order."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        if (outbox := _OUTBOXES.get(loop)) is None:
            outbox = _OUTBOXES[loop] = _Outbox(loop)
        self._outbox = outbox
        self._queue: asyncio.Queue[Item] = asyncio.Queue()

    def emitter(self) -> Emit:
        def emit(item: Item) -> None:
            self._outbox.put(self._queue, item)

        return emit

    async def get(self) -> int | None:
        item = await self._queue.get()
        if isinstance(item, BaseException):
            raise RuntimeError("the decoding thread failed") from item
        return item
