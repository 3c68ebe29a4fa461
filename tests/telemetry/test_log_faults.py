"""The benchmark log when its disk is full or its file moves: requests go on, rows are counted
as dropped, and writing resumes by itself. /dev/full is a disk that is always full."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from app.telemetry.benchlog import BenchmarkLog
from app.telemetry.logfiles import read_rows
from tests.conftest import ServeFactory
from tests.helpers import sample
from tests.telemetry.test_benchlog import _row, behind_a_held_write

pytestmark = pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full here")
FULL = "rows are being dropped: {}: No space left on device"


def _point(link: Path, target: Path | str) -> None:
    """Make `link` a symlink to `target`, atomically (as a remount or a new disk would)."""
    staged = link.with_suffix(".staged")
    os.symlink(target, staged)
    os.replace(staged, link)


def test_a_full_disk_drops_rows_warns_once_and_writing_resumes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, disk = tmp_path / "bench.jsonl", tmp_path / "new-disk.jsonl"
    _point(path, "/dev/full")
    drops: list[int] = []
    log = BenchmarkLog(path, every=100, on_drop=lambda: drops.append(1))
    log.start()
    with caplog.at_level(logging.WARNING, "app.telemetry.benchlog"):
        for i in range(3):
            log.append(_row(i))
        log.flush()
        dropping = (log.problem, log.dropped, len(drops))
        _point(path, disk)
        log.append(_row(3))
        log.flush()
    log.close()
    assert dropping == (FULL.format(path), 3, 3)
    assert (log.problem, log.requests_written) == (None, 1)
    assert [json.loads(line)["request_id"] for line in disk.read_text().splitlines()] == ["r3"]
    assert [r.getMessage() for r in caplog.records] == [
        f"{FULL.format(path)} (1 dropped)",  # once a minute, however many rows drop
        f"writing {path} again, after 3 dropped rows",
    ]


def test_a_rotated_log_is_reopened_at_its_path(tmp_path: Path) -> None:
    path = tmp_path / "bench.jsonl"
    log = BenchmarkLog(path, every=100)
    log.start()
    log.append(_row(0))
    log.flush()
    path.rename(tmp_path / "bench.jsonl.1")  # logrotate's move
    log.append(_row(1))
    log.close()
    assert [json.loads(line)["request_id"] for line in path.read_text().splitlines()] == ["r1"]
    assert (tmp_path / "bench.jsonl.1").read_text().count("\n") == 1


@pytest.mark.anyio
async def test_the_service_answers_while_its_log_is_full_and_health_says_so(
    serve: ServeFactory, tmp_path: Path
) -> None:
    path, disk = tmp_path / "logs" / "full.jsonl", tmp_path / "logs" / "room.jsonl"
    path.parent.mkdir()
    _point(path, "/dev/full")
    async with serve(benchmark_log=path, active_model="echo") as (_, client, service):
        answered = await client.post("/generate", json={"prompt": "hi"})
        service.log.flush()
        health = await client.get("/health")
        dropped = sample(service, "bankllm_log_write_errors_total")
        _point(path, disk)
        await client.post("/generate", json={"prompt": "hi"})
        service.log.flush()
        healed = await client.get("/health")
    assert answered.status_code == 200
    assert (health.status_code, health.json()["status"], health.json()["log_problem"]) == (
        200,
        "degraded",
        FULL.format("…/full.jsonl"),  # a public probe names no server folder
    )
    assert dropped == 1.0  # the request's row (the audit trail has a file of its own)
    assert (healed.json()["status"], healed.json()["log_problem"]) == ("ok", None)
    assert [json.loads(line)["status"] for line in disk.read_text().splitlines()] == ["ok"]


def test_a_write_that_fails_with_its_summary_does_not_stop_the_next_summaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A summary goes out in the write of the row that completes its window; when that write
    fails, the row is dropped and the window waits for the next one."""
    path = tmp_path / "bench.jsonl"
    write = os.write
    failed: list[bytes] = []

    def full_once_for_a_summary(fd: int, data: Any) -> int:
        if b'"type":"summary"' in bytes(data) and not failed:
            failed.append(bytes(data))
            raise OSError(28, "No space left on device")
        return write(fd, data)

    log = BenchmarkLog(path, every=2)
    log.start()
    monkeypatch.setattr(os, "write", full_once_for_a_summary)
    for i in range(6):
        log.append(_row(i))
        log.flush()  # a write a row
    log.close()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r.get("request_id", r["type"]) for r in rows] == [
        "r0",
        "r2",
        "summary",
        "r3",
        "r4",
        "summary",
        "r5",
    ]
    assert [r["models"]["custom"]["count"] for r in rows if r["type"] == "summary"] == [2, 2]
    assert (log.dropped, len(failed)) == (1, 1)


def test_a_write_cut_short_by_a_full_disk_keeps_the_rows_that_reached_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bench.jsonl"
    write = os.write

    def filling(fd: int, data: bytes, n: int) -> int:
        if n == 2:  # r1-r3 together: room for r1, r2 and the start of r3
            lines = data.splitlines(keepends=True)
            return write(fd, b"".join(lines[:2]) + lines[2][:5])
        if n == 3:
            raise OSError(28, "No space left on device")
        return write(fd, data)

    log = BenchmarkLog(path, every=100)
    log.start()
    behind_a_held_write(monkeypatch, log, [_row(i) for i in range(4)], filling)
    log.flush()
    counted = (log.dropped, log.requests_written)
    log.append(_row(4))  # the file has room again: the torn line is ended first
    log.close()
    assert counted == (1, 3)
    assert [r["request_id"] for r in read_rows(path)] == ["r0", "r1", "r2", "r4"]
    assert log.requests_written == 4


def test_a_request_row_without_its_figures_is_dropped_alone(tmp_path: Path) -> None:
    path = tmp_path / "bench.jsonl"
    log = BenchmarkLog(path, every=100)
    log.start()
    broken = _row(1)
    del broken["latency_ms"]
    for row in (_row(0), broken, _row(2)):
        log.append(row)
    log.close()
    assert [r["request_id"] for r in read_rows(path)] == ["r0", "r2"]
    assert (log.dropped, log.requests_written) == (1, 2)


def test_a_row_with_a_number_json_has_not_is_dropped_alone(tmp_path: Path) -> None:
    """NaN and Infinity are not JSON: such a row is dropped; the words, in a string, are kept."""
    path = tmp_path / "bench.jsonl"
    log = BenchmarkLog(path, every=100)
    log.start()
    rows = [_row(0), {**_row(1), "latency_ms": float("nan")}, {**_row(2), "tpot_ms": float("inf")}]
    rows.append({**_row(3), "label": "NaN Infinity é"})
    for row in rows:
        log.append(row)
    log.close()
    written = list(read_rows(path))
    assert [(r["request_id"], r.get("label")) for r in written] == [
        ("r0", None),
        ("r3", "NaN Infinity é"),
    ]
    assert (log.dropped, log.requests_written) == (2, 2)
    assert all(json.loads(line) for line in path.read_text(encoding="utf-8").splitlines())
