"""What the service itself costs: our /generate on the `echo` model (auth, validation, metrics
and the JSONL log all on) against a bare FastAPI app returning the same JSON, and against the
LiteLLM proxy with a `mock_response` model, each driven by `hey` at c=1 and c=32.

    python benchmarks/overhead.py [--seconds 10] [--rounds 3] [--litellm-venv .bench/litellm]

Needs `hey` (Debian: apt-get install hey) and, for LiteLLM, `make bench-litellm` (LiteLLM proxy
1.108.7 in a virtual environment of its own: a benchmark tool, never a project dependency).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-user-key-0123"
PROMPT = {"prompt": "I still have not received my new card", "max_tokens": 32}
MOCK_REPLY = (
    "intent: card_arrival\nThis is the echo model. It answers the same words to every prompt."
)


@dataclass(frozen=True)
class Target:
    name: str
    command: list[str]
    env: dict[str, str]
    url: str  # POST target
    health: str
    body: dict[str, object]
    headers: dict[str, str]
    cwd: Path = ROOT  # the source tree it runs from


@dataclass(frozen=True)
class Result:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} was not ready in {timeout_s:.0f} s")


@contextmanager
def _serving(target: Target) -> Iterator[subprocess.Popen[bytes]]:
    """The server in a process group of its own, all of which is gone afterwards (vLLM's engine
    core and workers are children that would otherwise take the next server's cores)."""
    proc = subprocess.Popen(
        target.command,
        env={**os.environ, **target.env},
        cwd=target.cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_ready(target.health, proc)
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        finally:
            with suppress(ProcessLookupError):  # whatever of the group is still there
                os.killpg(proc.pid, signal.SIGKILL)


def print_table(results: dict[str, dict[int, Result]], levels: tuple[int, ...], width: int) -> None:
    """req/s, p50, p99 and errors per target and concurrency level, side by side."""
    header = "".join(f"{f'c={c} req/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}" for c in levels)
    print(f"\n{'server':<{width}}{header}")
    for name, by_level in results.items():
        row = f"{name:<{width}}"
        for c in levels:
            r = by_level[c]
            row += f"{r.requests_per_s:>12.0f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}{r.errors:>8}"
        print(row)


def _hey(target: Target, concurrency: int, seconds: float) -> Result:
    command = [
        "hey",
        "-z",
        f"{seconds}s",
        "-c",
        str(concurrency),
        "-m",
        "POST",
        "-T",
        "application/json",
        "-d",
        json.dumps(target.body),
    ]
    for name, value in target.headers.items():
        command += ["-H", f"{name}: {value}"]
    out = subprocess.run([*command, target.url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = float(re.search(r"50%+ in ([\d.]+) secs", out).group(1))  # type: ignore[union-attr]
    p99 = float(re.search(r"99%+ in ([\d.]+) secs", out).group(1))  # type: ignore[union-attr]
    statuses = dict(re.findall(r"\[(\d{3})\]\s+(\d+) responses", out))
    errors = sum(int(n) for code, n in statuses.items() if code != "200")
    return Result(rps, p50 * 1000, p99 * 1000, errors)


def _targets(litellm_venv: Path, workdir: Path) -> list[Target]:
    python = sys.executable
    ours_port, bare_port, litellm_port = _free_port(), _free_port(), _free_port()
    ours_env = {
        "ACTIVE_MODEL": "echo",
        "ENABLE_ECHO_MODEL": "true",
        "API_KEYS": KEY,
        "ADMIN_API_KEY": "bench-admin-key-0123",
        "LOG_LEVEL": "WARNING",
        "BENCHMARK_LOG": str(workdir / "bench.jsonl"),
        "MAX_CONCURRENCY": "64",
        "MAX_QUEUE": "1024",
    }
    auth = {"Authorization": f"Bearer {KEY}"}
    targets = [
        Target(
            "bankllm (echo)",
            [python, "-m", "app.cli", "serve", "--port", str(ours_port)],
            ours_env,
            f"http://127.0.0.1:{ours_port}/generate",
            f"http://127.0.0.1:{ours_port}/health",
            PROMPT,
            auth,
        ),
        Target(
            "bare FastAPI",
            [
                python,
                "-m",
                "uvicorn",
                "benchmarks.bare_app:app",
                "--port",
                str(bare_port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            {},
            f"http://127.0.0.1:{bare_port}/generate",
            f"http://127.0.0.1:{bare_port}/health",
            PROMPT,
            {},
        ),
    ]
    litellm = litellm_venv / "bin" / "litellm"
    if litellm.exists():
        config = workdir / "litellm.yaml"
        config.write_text(
            "model_list:\n  - model_name: mock\n    litellm_params:\n"
            "      model: openai/mock\n      api_key: sk-not-used\n"
            f"      mock_response: {json.dumps(MOCK_REPLY)}\n"
        )
        master = "sk-bench-master"
        targets.append(
            Target(
                "LiteLLM proxy 1.108.7",
                [
                    str(litellm),
                    "--config",
                    str(config),
                    "--port",
                    str(litellm_port),
                    "--num_workers",
                    "1",
                ],
                {"LITELLM_MASTER_KEY": master, "LITELLM_LOG": "ERROR"},
                f"http://127.0.0.1:{litellm_port}/chat/completions",
                f"http://127.0.0.1:{litellm_port}/health/liveliness",
                {
                    "model": "mock",
                    "messages": [{"role": "user", "content": PROMPT["prompt"]}],
                    "max_tokens": 32,
                },
                {"Authorization": f"Bearer {master}"},
            )
        )
    else:
        print(f"LiteLLM skipped: no {litellm} (make bench-litellm)")
    return targets


def alternating(
    targets: list[Target], levels: tuple[int, ...], rounds: int, seconds: float
) -> dict[str, dict[int, list[Result]]]:
    """Each target served and driven at each level, `rounds` times, in alternating order, so a
    machine that slows down for a while (these do, by 2x within minutes) slows every target
    alike and the medians compare: name -> level -> one result a round."""
    runs: dict[str, dict[int, list[Result]]] = {t.name: {c: [] for c in levels} for t in targets}
    for round_ in range(rounds):
        for target in targets if round_ % 2 == 0 else targets[::-1]:
            with _serving(target):
                _hey(target, 8, 2)  # warm-up
                for c in levels:
                    runs[target.name][c].append(_hey(target, c, seconds))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per server, level and round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians")
    parser.add_argument("--litellm-venv", type=Path, default=ROOT / ".bench" / "litellm")
    args = parser.parse_args()
    if shutil.which("hey") is None:
        raise SystemExit("needs hey: apt-get install hey")
    levels = (1, 32)
    with tempfile.TemporaryDirectory() as tmp:
        targets = _targets(args.litellm_venv, Path(tmp))
        runs = alternating(targets, levels, args.rounds, args.seconds)
    results = {
        name: {c: _median(rs) for c, rs in by_level.items()} for name, by_level in runs.items()
    }
    ours = results["bankllm (echo)"]
    print_table(results, levels, 24)
    for name, by_level in results.items():
        if name != "bankllm (echo)":
            ratios = ", ".join(
                f"c={c}: {ours[c].requests_per_s / by_level[c].requests_per_s:.2f}x" for c in levels
            )
            print(f"bankllm throughput / {name}: {ratios}")
    for name, rounds in runs.items():
        cells = "; ".join(
            f"c={c}: {', '.join(f'{r.requests_per_s:.0f}' for r in rs)}" for c, rs in rounds.items()
        )
        print(f"  {name} req/s by round: {cells}")


def _median(results: list[Result]) -> Result:
    """The round with the median requests/s (its own latencies and errors with it)."""
    return sorted(results, key=lambda r: r.requests_per_s)[len(results) // 2]


if __name__ == "__main__":
    main()
