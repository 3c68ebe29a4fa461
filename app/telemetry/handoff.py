"""What requests hand the benchmark log's writer thread, and how the writer takes it.

`put` is a deque append that wakes the writer only when it is asleep: a `queue.Queue` took a
lock and notified a condition for every row, and woke the writer for every row, which then
took the interpreter from the requests to write one row at a time. Here the writer, once
woken, lingers a moment so the rows of the next few requests join the same write; a flush or
a stop cuts the linger short."""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Handoff(Generic[T]):
    def __init__(self, linger_s: float) -> None:
        self._items: deque[T] = deque()
        self._linger_s = linger_s
        self._wake = threading.Event()  # set by a put to a sleeping writer
        self._hurry = threading.Event()  # set by a put that someone waits for
        self._asleep = False

    def put(self, item: T, *, urgent: bool = False) -> None:
        """From any thread; never blocks. `urgent`: the writer takes it without lingering."""
        self._items.append(item)
        if urgent:
            self._hurry.set()
        if self._asleep:
            self._wake.set()

    def take(self, most: int) -> list[T]:
        """For the one writer: wait until something is there, linger, and take up to `most`."""
        while not self._items:
            self._wake.clear()
            self._asleep = True
            if not self._items:  # a put between the check above and here set no wake
                self._wake.wait()
            self._asleep = False
        if len(self._items) < most and self._hurry.wait(self._linger_s):
            self._hurry.clear()
        batch: list[T] = []
        while self._items and len(batch) < most:
            batch.append(self._items.popleft())
        return batch
