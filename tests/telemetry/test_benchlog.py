from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest

from app.telemetry.benchlog import _STOP, BenchmarkLog
from app.telemetry.logfiles import log_files, read_log, read_rows


def _row(i: int, model: str = "custom", status: str = "ok") -> dict[str, Any]:
    return {
        "ts": "2026-01-01T00:00:00.000Z",
        "type": "request",
        "request_id": f"r{i}",
        "model": model,
        "status": status,
        "latency_ms": float(i + 1),
        "tokens_per_s": 10.0,
    }


def test_rows_are_whole_lines_with_a_summary_every_n(tmp_path: Path) -> None:
    log = BenchmarkLog(tmp_path / "sub" / "bench.jsonl", every=3)
    log.start()
    for i in range(7):
        log.append(_row(i))
    log.close()
    lines = (tmp_path / "sub" / "bench.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["type"] for r in rows] == ["request"] * 3 + ["summary"] + ["request"] * 3 + [
        "summary",
        "request",
    ]
    assert rows[3]["models"] == {
        "custom": {
            "version": ANY,
            "count": 3,
            "p50_ms": 2.0,
            "p95_ms": 2.9,
            "p99_ms": 2.98,
            "mean_tokens_per_s": 10.0,
            "error_rate": 0.0,
            "caller_errors": 0,
            "refused": 0,
            "mean_cost_usd": 0.0,
            "cost_per_1000_usd": None,  # no row priced: unknown, never free
            "machine_per_1000": None,
            "machine_unit": None,
            "labelled": 0,
            "accuracy": None,
            "accuracy_interval": None,
            "handoff_rate": 0.0,
            "p50_ttft_ms": ANY,
        }
    }
    assert rows[3]["fastest_model"] == "custom"
    assert rows[7]["models"] == {
        "custom": {
            "version": ANY,
            "count": 3,
            "p50_ms": 5.0,
            "p95_ms": 5.9,
            "p99_ms": 5.98,
            "mean_tokens_per_s": 10.0,
            "error_rate": 0.0,
            "caller_errors": 0,
            "refused": 0,
            "mean_cost_usd": 0.0,
            "cost_per_1000_usd": None,  # no row priced: unknown, never free
            "machine_per_1000": None,
            "machine_unit": None,
            "labelled": 0,
            "accuracy": None,
            "accuracy_interval": None,
            "handoff_rate": 0.0,
            "p50_ttft_ms": ANY,
        }
    }  # rows 4-6 only


def behind_a_held_write(
    monkeypatch: pytest.MonkeyPatch,
    log: BenchmarkLog,
    rows: list[dict[str, Any]],
    write: Callable[[int, bytes, int], int] | None = None,
) -> list[bytes]:
    """Append rows[0] and hold the writer in its write until rows[1:] wait behind it, so they
    go out together. `write(fd, data, n)` answers the n-th `os.write` (by default, the real
    one); every write's data is returned."""
    real = os.write
    writes: list[bytes] = []
    writing, go_on = threading.Event(), threading.Event()

    def held(fd: int, data: Any) -> int:
        writes.append(bytes(data))
        if len(writes) == 1:
            writing.set()
            go_on.wait(30)
        return write(fd, bytes(data), len(writes)) if write else real(fd, data)

    monkeypatch.setattr(os, "write", held)
    log.append(rows[0])
    assert writing.wait(30)
    for row in rows[1:]:
        log.append(row)
    go_on.set()
    return writes


def test_rows_that_wait_for_the_writer_go_out_in_one_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bench.jsonl"
    log = BenchmarkLog(path, every=3)
    log.start()
    writes = behind_a_held_write(monkeypatch, log, [_row(i) for i in range(6)])
    log.close()
    kinds = [[json.loads(line)["type"] for line in w.decode().splitlines()] for w in writes]
    assert kinds == [
        ["request"],
        ["request", "request", "summary", "request", "request", "request", "summary"],
    ]
    assert path.read_bytes() == b"".join(writes)


def test_a_new_log_is_the_service_users_alone(tmp_path: Path) -> None:
    log = BenchmarkLog(tmp_path / "bench.jsonl", every=3)
    log.start()
    log.append(_row(0))
    log.close()
    assert (tmp_path / "bench.jsonl").stat().st_mode & 0o777 == 0o600


def test_a_flush_with_no_writer_running_returns(tmp_path: Path) -> None:
    """Before start, and once close has begun (a summary asked for while the service stops):
    a flush then has nothing to wait behind, and must not wait for good."""
    path = tmp_path / "bench.jsonl"
    log = BenchmarkLog(path, every=100)
    log.flush()
    log.start()
    log.append(_row(0))
    log.close()
    log.flush()
    assert log.summary()["models"]["custom"]["count"] == 1
    assert [r["request_id"] for r in read_rows(path)] == ["r0"]


def test_a_flush_while_the_log_closes_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flush from another thread (GET /benchmarks in the thread pool) after close has asked
    the writer to stop, while the writer still writes: nothing would ever answer a flush queued
    behind the stop."""
    log = BenchmarkLog(tmp_path / "bench.jsonl", every=100)
    log.start()
    real_write, real_put = os.write, log._rows.put
    writing, go_on, stopping = threading.Event(), threading.Event(), threading.Event()

    def held(fd: int, data: Any) -> int:
        writing.set()
        go_on.wait(60)
        return real_write(fd, data)

    def put(item: Any) -> None:
        real_put(item)
        if item is _STOP:
            stopping.set()

    monkeypatch.setattr(os, "write", held)
    monkeypatch.setattr(log._rows, "put", put)
    log.append(_row(0))
    assert writing.wait(30)
    closer = threading.Thread(target=log.close)
    closer.start()
    assert stopping.wait(30)
    flusher = threading.Thread(target=log.flush, daemon=True)
    flusher.start()
    flusher.join(10)  # it returns at once; a flush waiting on the writer would wait 60 s
    flushed = not flusher.is_alive()
    go_on.set()
    closer.join(30)
    assert (flushed, closer.is_alive()) == (True, False)
    assert [r["request_id"] for r in read_rows(tmp_path / "bench.jsonl")] == ["r0"]


def test_a_torn_last_line_is_skipped_and_ended(tmp_path: Path) -> None:
    path = tmp_path / "bench.jsonl"
    path.write_text(json.dumps(_row(0)) + "\n" + '{"ts": "2026-01-01T00:0')  # crash mid-write
    log = BenchmarkLog(path, every=100)
    log.start()
    log.append(_row(1, "echo"))
    summary = log.summary()
    log.close()
    assert [r["request_id"] for r in read_rows(path)] == ["r0", "r1"]
    assert path.read_text().splitlines()[1] == '{"ts": "2026-01-01T00:0'
    assert sorted(summary["models"]) == ["custom", "echo"]  # the earlier process's row counts


def test_summary_waits_for_pending_rows(tmp_path: Path) -> None:
    log = BenchmarkLog(tmp_path / "bench.jsonl", every=100)
    log.start()
    for i in range(50):
        log.append(_row(i, status="ok" if i % 10 else "timeout"))
    figures = log.summary()["models"]["custom"]
    log.close()
    assert (figures["count"], figures["error_rate"]) == (50, 0.1)


def test_a_replicas_log_is_its_own_file_and_its_summary_reads_the_family(tmp_path: Path) -> None:
    base = tmp_path / "bench.jsonl"
    other = BenchmarkLog(tmp_path / "bench.k2c9x0aa.jsonl", every=100)  # another replica's file
    other.start()
    other.append({**_row(0, model="custom-b"), "ts": "2026-01-01T00:00:01.000Z"})
    other.close()
    (tmp_path / "bench.old.jsonl").write_text(json.dumps(_row(9, model="stale")) + "\n")
    (tmp_path / "benchmarks.a1b2c3d4.jsonl").write_text(json.dumps(_row(8, model="x")) + "\n")
    log = BenchmarkLog(
        tmp_path / "bench.q7w8e9r0.jsonl",
        every=100,
        family=base,
        stamp={"replica": "q7w8e9r0"},
    )
    log.start()
    log.append(_row(1))
    summary = log.summary()
    log.close()
    assert [p.name for p in log_files(base)] == ["bench.k2c9x0aa.jsonl", "bench.q7w8e9r0.jsonl"]
    assert [(r["request_id"], r.get("replica")) for r in read_log(base)] == [
        ("r1", "q7w8e9r0"),  # in time order across the files
        ("r0", None),
    ]
    assert {name: f["count"] for name, f in summary["models"].items()} == {
        "custom": 1,
        "custom-b": 1,
    }


def test_callers_at_once_share_one_summary(tmp_path: Path) -> None:
    """A summary of a full window holds the interpreter; one is made at most every
    SUMMARY_FRESH_S, whoever asks."""
    log = BenchmarkLog(tmp_path / "bench.jsonl", every=1000)
    log.start()
    try:
        first = log.summary()
        assert log.summary() is first
    finally:
        log.close()
