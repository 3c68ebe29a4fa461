"""The JSONL benchmark log: one row per request, a summary row every N, written off the hot path."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.telemetry.appendfile import AppendFile
from app.telemetry.clock import utc_now
from app.telemetry.lines import Line, encode
from app.telemetry.logfiles import read_log, read_rows
from app.telemetry.recommend import DEFAULT_PRIORITY, Priority
from app.telemetry.shadow_stats import shadow_summary
from app.telemetry.summary import Sample, SampleWindow, summarize

logger = logging.getLogger(__name__)
WINDOW = 100_000  # newest request rows kept in memory for summaries
# A summary of a full window holds the interpreter ~200 ms: one is made at most this often,
# and callers meanwhile (any number, any key) get the last one.
SUMMARY_FRESH_S = 2.0
WARN_EVERY_S = 60.0  # while rows are dropped, one warning a minute
BATCH = 1024  # rows at most in one write
# The woken writer waits this long for more rows to join its write: a wake-up a row takes the
# interpreter from the requests (docs/performance.md measures it). A flush or a stop cuts it short.
LINGER_S = 0.05
_STOP = threading.Event()  # put last by close; like a flush's mark, set once written


class BenchmarkLog:
    """Appends rows from a background thread; `append` never blocks a request. Every
    `every` request rows it adds a summary row over those rows.

    The rows waiting when the writer wakes go out in one `write` of whole lines to a file
    opened with O_APPEND (one write a batch, not one a row: under load the writer shares the
    interpreter with the requests), so rows from several processes never interleave and a
    crash can only leave a torn last line, which `read_rows` skips and the next start cuts
    off with a newline.

    A row that cannot be written (disk full, file gone read-only) is dropped and counted
    (`on_drop`), never waited for; `problem` says so, a warning is logged once a minute, and
    the next row tries the file again, reopened, so writing resumes by itself once there is
    room. A file moved or deleted (log rotation) is reopened at its path.

    One replica of several (Ray Serve) writes its own file, `<stem>.<replica>.jsonl` beside
    `family`, and stamps its id on each row (`stamp`); its summaries read the whole family.
    """

    def __init__(
        self,
        path: Path,
        every: int,
        on_drop: Callable[[], None] = lambda: None,
        *,
        family: Path | None = None,
        stamp: dict[str, Any] | None = None,
        priority: Priority = DEFAULT_PRIORITY,
    ):
        self.path = path
        self._every = every
        self._on_drop = on_drop
        self._family = family
        self._stamp = stamp or {}
        self._priority = priority  # what the summaries' recommendation puts first
        self.stamp = self._stamp  # what every row carries (the audit trail's rows too)
        self.problem: str | None = None  # why rows are being dropped now, or None
        self.dropped = 0  # rows dropped by this process
        self._warned_at = -WARN_EVERY_S
        self._dropped_since_warning = 0
        self._rows: queue.Queue[Line | threading.Event] = queue.Queue()
        self._hurry = threading.Event()
        self._samples = SampleWindow(WINDOW)
        self._shadows: deque[dict[str, Any]] = deque(maxlen=WINDOW)  # the newest shadow rows
        self._lock = threading.Lock()
        self._written = threading.Condition()
        self.requests_written = 0  # request rows written by this process
        self._window: list[Sample] = []  # request rows since the last summary row
        self._file = AppendFile(path)
        self._thread: threading.Thread | None = None  # the writer, while it takes rows
        self._running = threading.Lock()  # held to start it, stop it, or flush behind it
        self._summarizing = threading.Lock()  # callers at once wait for one summary
        self._summary: tuple[float, dict[str, Any]] | None = None  # when made, and it

    def start(self) -> None:
        try:
            self._file.open()
        except OSError as exc:  # serve anyway; each row tries again
            self.problem = f"rows are being dropped: {self.path}: {_reason(exc)}"
            logger.warning("%s", self.problem)
        for row in read_rows(self.path):
            if row.get("type") == "request":
                self._samples.append(Sample.from_row(row))
            elif row.get("type") == "shadow":
                self._shadows.append(row)
        thread = threading.Thread(target=self._run, name="benchmark-log", daemon=True)
        thread.start()
        with self._running:
            self._thread = thread

    def append(self, row: dict[str, Any]) -> None:
        """Encoded here, in the caller's thread, so the writer holds the interpreter only to
        join and write lines: under load each time it holds it the requests wait for it."""
        if self._stamp:
            row.update(self._stamp)
        try:
            line = Line.of(row)
        except Exception:  # not JSON (NaN, say), or a request row without its figures
            logger.exception("could not encode a benchmark row for %s", self.path)
            with self._lock:
                self._drop(None)
            return
        self._rows.put(line)

    def flush(self) -> None:
        """Wait until every row appended so far is written; at once when no writer runs
        (before `start`, or once `close` has begun)."""
        mark = threading.Event()
        with self._running:  # a mark goes in only ahead of the stop, so it is always set
            if self._thread is None:
                return
            self._rows.put(mark)
            self._hurry.set()
        mark.wait()

    def wait_written(self, requests: int, timeout_s: float) -> bool:
        """From any thread: wait until this process has written `requests` request rows."""
        with self._written:
            return self._written.wait_for(lambda: self.requests_written >= requests, timeout_s)

    def summary(self) -> dict[str, Any]:
        """Per-model figures over the log's newest rows (this process's included; every
        replica's, in a family), at most SUMMARY_FRESH_S old."""
        with self._summarizing:
            if self._summary is not None and time.monotonic() - self._summary[0] < SUMMARY_FRESH_S:
                return self._summary[1]
            self.flush()
            if self._family is not None:
                made = _summarize_rows(read_log(self._family), self._priority)
            else:
                made = self._summarize()
            self._summary = (time.monotonic(), made)
            return made

    def shadow_rows(self) -> list[dict[str, Any]]:
        """The log's newest shadow rows (this process's included): what GET /shadow and a
        gated switch judge a shadow by."""
        self.flush()
        with self._lock:
            return list(self._shadows)

    def close(self) -> None:
        with self._running:
            thread, self._thread = self._thread, None
            if thread is not None:
                self._rows.put(_STOP)
                self._hurry.set()
        if thread is not None:
            thread.join()
        self._file.close()

    def _take(self) -> list[Line | threading.Event]:
        """Wait for a row, linger, then take whatever else waits (up to BATCH) for one write."""
        batch = [self._rows.get()]
        if not isinstance(batch[0], threading.Event) and self._hurry.wait(LINGER_S):
            self._hurry.clear()
        while len(batch) < BATCH:
            try:
                batch.append(self._rows.get_nowait())
            except queue.Empty:
                break
        return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            lines = [line for line in batch if not isinstance(line, threading.Event)]
            try:
                if lines:
                    self._write_lines(lines)
            except Exception:
                logger.exception("could not write benchmark rows to %s", self.path)
            finally:
                for mark in batch:
                    if isinstance(mark, threading.Event):
                        mark.set()
            if _STOP in batch:
                return

    def _drop(self, error: OSError | None) -> None:
        """Count a row lost: one not written (`error`), or not encodable (None). Under _lock:
        rows are encoded in the callers' threads."""
        self.dropped += 1
        self._dropped_since_warning += 1
        self._on_drop()
        self.problem = f"rows are being dropped: {self.path}: {_reason(error)}"
        if (now := time.monotonic()) - self._warned_at >= WARN_EVERY_S:
            logger.warning("%s (%d dropped)", self.problem, self._dropped_since_warning)
            self._warned_at, self._dropped_since_warning = now, 0

    def _write_lines(self, batch: list[Line]) -> None:
        """Lines in one write, each summary row after the request row that completes its
        window. When the write fails part way (a disk that fills), the rows whose lines
        reached the file count as written and the rest as dropped."""
        data = bytearray()
        ends: list[tuple[int, Line | None]] = []  # (end, its row's line; None: a summary)
        window = len(self._window)
        for line in batch:
            data += line.text
            ends.append((len(data), line))
            if line.sample is None or (window := window + 1) < self._every:
                continue
            window = 0
            try:  # the rows since the previous summary: cheap at any log size, a time series
                waiting = (e.sample for _, e in ends if e is not None and e.sample is not None)
                samples = [*self._window, *waiting][-self._every :]
                data += encode(
                    {"ts": utc_now(), "type": "summary", **summarize(samples, None, self._priority)}
                )
            except Exception:
                logger.exception("could not summarize benchmark rows for %s", self.path)
            ends.append((len(data), None))  # its window starts again
        reached, error = self._file.write(bytes(data))
        committed = requests = 0
        with self._lock:
            for end, written in ends:
                if end > reached:
                    break
                committed += 1
                if written is None:
                    self._window = []
                elif written.sample is not None:
                    self._samples.append(written.sample)
                    self._window.append(written.sample)
                    requests += 1
                elif written.shadow is not None:
                    self._shadows.append(written.shadow)
            if error is not None:  # a full disk must not kill the writer or block requests
                for _ in (lost for _, lost in ends[committed:] if lost is not None):
                    self._drop(error)
            elif self.problem is not None:
                logger.warning("writing %s again, after %d dropped rows", self.path, self.dropped)
                self.problem = None
        with self._written:
            self.requests_written += requests
            self._written.notify_all()

    def _summarize(self) -> dict[str, Any]:
        with self._lock:
            samples, shadows = self._samples.samples(), list(self._shadows)
        return summarize(samples, shadow_summary(shadows), self._priority)


def _summarize_rows(rows: list[dict[str, Any]], priority: Priority) -> dict[str, Any]:
    """The same figures as a process's own window: its newest WINDOW requests and shadows."""
    samples = [Sample.from_row(r) for r in rows if r.get("type") == "request"][-WINDOW:]
    shadows = [r for r in rows if r.get("type") == "shadow"][-WINDOW:]
    return summarize(samples, shadow_summary(shadows), priority)


def _reason(error: OSError | None) -> str:
    if error is None:
        return "a row that cannot be encoded (see the error logged)"
    return error.strerror or repr(error)
