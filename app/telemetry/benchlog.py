"""The JSONL benchmark log: one row per request, a summary row every N, written off the hot path."""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.telemetry.summary import Sample, SampleWindow, summarize

logger = logging.getLogger(__name__)
WINDOW = 100_000  # newest request rows kept in memory for summaries
_STOP = object()


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def read_rows(path: Path) -> Iterator[dict[str, Any]]:
    """Every whole JSON row of a log; a torn or foreign line is skipped."""
    if not path.is_file():
        return
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                yield row


class BenchmarkLog:
    """Appends rows from a background thread; `append` never blocks a request. Every
    `every` request rows it adds a summary row over those rows.

    Each row is one `write` of one whole line to a file opened with O_APPEND, so rows from
    several processes never interleave and a crash can only leave a torn last line, which
    `read_rows` skips and the next start cuts off with a newline.
    """

    def __init__(self, path: Path, every: int):
        self.path = path
        self._every = every
        self._queue: queue.Queue[object] = queue.Queue()
        self._samples = SampleWindow(WINDOW)
        self._lock = threading.Lock()
        self._written = threading.Condition()
        self.requests_written = 0  # request rows written by this process
        self._window: list[Sample] = []  # request rows since the last summary row
        self._fd: int | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if not _ends_with_newline(self.path):
            self._write_line(b"\n")  # end a line torn by a crash
        for row in read_rows(self.path):
            if row.get("type") == "request":
                self._samples.append(Sample.from_row(row))
        self._thread = threading.Thread(target=self._run, name="benchmark-log", daemon=True)
        self._thread.start()

    def append(self, row: dict[str, Any]) -> None:
        self._queue.put_nowait(row)

    def flush(self) -> None:
        """Wait until every row appended so far is written."""
        self._queue.join()

    def wait_written(self, requests: int, timeout_s: float) -> bool:
        """From any thread: wait until this process has written `requests` request rows."""
        with self._written:
            return self._written.wait_for(lambda: self.requests_written >= requests, timeout_s)

    def summary(self) -> dict[str, Any]:
        """Per-model figures over the log's newest rows (this process's included)."""
        self.flush()
        return self._summarize()

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put_nowait(_STOP)
            self._thread.join()
            self._thread = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _run(self) -> None:
        while True:
            row = self._queue.get()
            try:
                if row is _STOP:
                    return
                assert isinstance(row, dict)
                self._write_row(row)
            except Exception:  # a full disk must not kill the writer or block requests
                logger.exception("could not write a benchmark row to %s", self.path)
            finally:
                self._queue.task_done()

    def _write_row(self, row: dict[str, Any]) -> None:
        self._write_line(_encode(row))
        if row.get("type") != "request":
            return
        sample = Sample.from_row(row)
        with self._lock:
            self._samples.append(sample)
        self._window.append(sample)
        with self._written:
            self.requests_written += 1
            self._written.notify_all()
        if len(self._window) == self._every:
            # the rows since the previous summary: cheap at any log size, and a time series
            summary = {"ts": utc_now(), "type": "summary", **summarize(self._window)}
            self._write_line(_encode(summary))
            self._window.clear()

    def _summarize(self) -> dict[str, Any]:
        with self._lock:
            samples = self._samples.samples()
        return summarize(samples)

    def _write_line(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:  # a regular file takes it in one write; the loop is for the odd short write
            view = view[os.write(self._fd, view) :]


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as f:
        if f.seek(0, os.SEEK_END) == 0:
            return True
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def _encode(row: dict[str, Any]) -> bytes:
    return (json.dumps(row, separators=(",", ":"), allow_nan=False) + "\n").encode()
