"""`bankllm serve` as a real process on 127.0.0.1, for tests that need real signals."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.fake_gemini import API_KEY as GEMINI_KEY
from tests.helpers import ADMIN_KEY, USER_KEY

_RUNNING = re.compile(r"Uvicorn running on (http://127\.0\.0\.1:\d+)")


class ServiceProcess:
    """The process, its log lines as they come (stderr), and its URL once it listens."""

    def __init__(
        self,
        env: dict[str, str],
        cwd: Path,
        args: tuple[str, ...] = ("--port", "0"),
        program: tuple[str, ...] = (sys.executable, "-m", "app.cli"),
    ):
        self.lines: list[str] = []
        self._new: queue.Queue[str | None] = queue.Queue()
        command = [*program, "serve", *args]
        self.popen = subprocess.Popen(
            command,
            cwd=cwd,
            env={**os.environ, "PYTHONPATH": str(Path.cwd()), **env},
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.url = ""  # known once it listens

    def _read(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            self._new.put(line.rstrip("\n"))
        self._new.put(None)  # the process closed its stderr: it ended

    def wait_line(self, pattern: re.Pattern[str] | str, timeout_s: float) -> re.Match[str]:
        """The first log line (seen or to come) that matches; AssertionError past the timeout."""
        pattern = re.compile(pattern)
        for seen in self.lines:
            if match := pattern.search(seen):
                return match
        end = time.monotonic() + timeout_s
        while (left := end - time.monotonic()) > 0:
            try:
                line: str | None = self._new.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise AssertionError(f"the service ended before {pattern.pattern!r}:\n{self.log}")
            self.lines.append(line)
            if match := pattern.search(line):
                return match
        raise AssertionError(f"no {pattern.pattern!r} within {timeout_s} s:\n{self.log}")

    def ended(self, timeout_s: float) -> int:
        """Its exit code, once it has exited and every line it logged has been read."""
        code = self.popen.wait(timeout=timeout_s)
        self._reader.join(timeout=30)
        return code

    @property
    def log(self) -> str:
        """Every line logged so far."""
        while True:
            try:
                line = self._new.get_nowait()
            except queue.Empty:
                return "\n".join(self.lines)
            if line is not None:
                self.lines.append(line)


@contextmanager
def service_process(
    env: dict[str, str],
    cwd: Path,
    args: tuple[str, ...] = ("--port", "0"),
    running: re.Pattern[str] = _RUNNING,
    timeout_s: float = 60,
    program: tuple[str, ...] = (sys.executable, "-m", "app.cli"),
) -> Iterator[ServiceProcess]:
    """A started service (`running` names its URL); killed at the end if the test left it
    running. `program` is what runs `serve`: this interpreter's package, or an installed
    `bankllm`."""
    process = ServiceProcess(env, cwd, args, program)
    try:
        process.url = process.wait_line(running, timeout_s=timeout_s).group(1)
        yield process
    finally:
        if process.popen.poll() is None:
            process.popen.kill()
        process.popen.wait(timeout=30)
        process._reader.join(timeout=30)  # it read to the end: the process has ended
        assert process.popen.stderr is not None
        process.popen.stderr.close()


def gemini_env(upstream_url: str, folder: Path, **settings: str) -> dict[str, str]:
    """The environment of a `bankllm serve` on the fake Gemini at `upstream_url`, with the
    test keys, its log in `folder`, and `settings` (by their variables' names) beside."""
    return {
        "ACTIVE_MODEL": "gemini",
        "GEMINI_API_KEY": GEMINI_KEY,
        "GEMINI_BASE_URL": upstream_url,
        "API_KEYS": USER_KEY,
        "ADMIN_API_KEY": ADMIN_KEY,
        "BENCHMARK_LOG": str(folder / "bench.jsonl"),
        **settings,
    }
