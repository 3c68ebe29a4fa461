"""`cancel_on_disconnect` on its own: a watcher that ends with the work, and the client's
leaving told as ClientDisconnected."""

from __future__ import annotations

import asyncio

import pytest
from starlette.requests import Request
from starlette.types import Message

from app.api._disconnect import cancel_on_disconnect
from app.errors import ClientDisconnected

pytestmark = pytest.mark.anyio
SCOPE = {"type": "http", "method": "POST", "path": "/generate", "headers": []}


def _request(client_leaves: asyncio.Event) -> Request:
    async def receive() -> Message:
        await client_leaves.wait()
        return {"type": "http.disconnect"}

    return Request(SCOPE, receive)


async def _ready() -> str:
    return "answer"


async def test_work_ready_at_once_leaves_no_watcher_behind() -> None:
    before = asyncio.all_tasks()
    requests = [_request(asyncio.Event()) for _ in range(3)]
    answers = [await cancel_on_disconnect(r, _ready()) for r in requests]
    await asyncio.sleep(0)  # the cancelled watchers finish
    assert (answers, asyncio.all_tasks() - before) == (["answer"] * 3, set())


async def test_work_that_waits_is_cancelled_when_the_client_leaves() -> None:
    leaves, started, cancelled = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def slow() -> str:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    async def leave_once_started() -> None:
        await started.wait()
        leaves.set()

    leaving = asyncio.create_task(leave_once_started())
    with pytest.raises(ClientDisconnected):
        await cancel_on_disconnect(_request(leaves), slow())
    await leaving
    task = asyncio.current_task()
    assert (cancelled.is_set(), task is not None and task.cancelling()) == (True, 0)


async def test_a_watcher_ends_with_work_that_waited_and_finished() -> None:
    go = asyncio.Event()
    before = asyncio.all_tasks()

    async def waits() -> str:
        await go.wait()
        return "answer"

    async def release() -> None:
        await asyncio.sleep(0)
        await asyncio.sleep(0)  # the watcher is running by now
        go.set()

    releasing = asyncio.create_task(release())
    answer = await cancel_on_disconnect(_request(asyncio.Event()), waits())
    await releasing
    await asyncio.sleep(0)  # the cancelled watcher finishes
    assert (answer, asyncio.all_tasks() - before) == ("answer", set())


async def test_of_two_requests_in_one_turn_only_the_one_whose_client_left_is_cancelled() -> None:
    leaves, stays, release = asyncio.Event(), asyncio.Event(), asyncio.Event()
    waiting = 0

    async def waits() -> str:
        nonlocal waiting
        waiting += 1
        if waiting == 2:  # both are waiting, each with its watcher
            leaves.set()
        await release.wait()
        return "answer"

    async def one(client: asyncio.Event) -> str:
        try:
            return await cancel_on_disconnect(_request(client), waits())
        except ClientDisconnected:
            return "left"
        finally:
            release.set()  # the one that left lets the other finish

    answers = await asyncio.gather(one(leaves), one(stays))
    assert list(answers) == ["left", "answer"]


async def test_a_watcher_that_failed_leaves_a_cancellation_from_elsewhere_as_it_is() -> None:
    started = asyncio.Event()

    async def receive() -> Message:
        raise RuntimeError("the server's receive broke")

    async def slow() -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    work = asyncio.create_task(cancel_on_disconnect(Request(SCOPE, receive), slow()))
    await started.wait()
    await asyncio.sleep(0)  # the watcher starts, and fails
    await asyncio.sleep(0)
    work.cancel("shutting down")
    with pytest.raises(asyncio.CancelledError):
        await work
