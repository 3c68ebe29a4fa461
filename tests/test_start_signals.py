"""SIGTERM at any moment of a real `bankllm serve`'s start-up (loading the model, warming it
up, compiling its decoding step in the background) ends in a clean exit 0 with the log closed,
never an abort (a process that exits while the compiler's threads run is aborted)."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from app.backends.custom.gpt.kernels import kernel_folder
from tests.process import ServiceProcess

CLOSED = "stopped: every model closed, the benchmark log written and closed"


def _reach(moment: str, process: ServiceProcess, cache: Path) -> None:
    if moment == "loading":  # the lifespan loads and warms the model
        process.wait_line("Waiting for application startup", timeout_s=120)
        return
    process.wait_line("Uvicorn running on", timeout_s=120)  # the step compiles meanwhile
    if moment == "serving":
        return
    process.wait_line("compiling the decoding step, its kernels kept in", timeout_s=120)
    if moment == "compiling":
        return
    kernels, deadline = kernel_folder(cache), time.monotonic() + 300
    while not any(kernels.rglob("*.so")):  # the C++ compiler
        assert time.monotonic() < deadline, "no kernel was written within 300 s"
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.popen.wait(timeout=0.05)
        assert process.popen.returncode is None, process.log


@pytest.mark.parametrize("moment", ["loading", "serving", "compiling", "compiling kernels"])
def test_sigterm_during_start_up_exits_0_with_the_log_closed(moment: str, tmp_path: Path) -> None:
    log = tmp_path / "bench.jsonl"
    env = {
        "CUSTOM_COMPILE": "true",
        "BANKLLM_CACHE_DIR": str(tmp_path / "cache"),  # nothing compiled yet: a long compile
        "API_KEYS": "user-key-0123456789abc",
        "BENCHMARK_LOG": str(log),
    }
    process = ServiceProcess(env, tmp_path)
    try:
        _reach(moment, process, tmp_path / "cache")
        process.popen.send_signal(signal.SIGTERM)
        code = process.ended(timeout_s=300)
    finally:
        if process.popen.poll() is None:
            process.popen.kill()
        process.ended(timeout_s=30)
        assert process.popen.stderr is not None
        process.popen.stderr.close()
    output = process.log
    assert (code, "terminate called" in output) == (0, False), output
    assert any(line.endswith(CLOSED) for line in output.splitlines()), output
    if log.exists():  # written and closed: every line whole
        assert all(json.loads(line) for line in log.read_text().splitlines())
    trail = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert (trail[0]["type"], trail[0]["action"]) == ("admin", "start")
