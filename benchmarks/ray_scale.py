"""Ray Serve against one process, side by side: the committed custom checkpoint at c=16 on one
`bankllm serve` (uvicorn) process, and on `bankllm serve --ray` with 1 and with 2 replicas,
round by round (each target started, warmed up, measured and stopped in turn, so the machine's
noise falls on all three alike); then the fleet's switch: the time from POST /switch until every
replica serves, to a model with nothing to load (the fan-out alone) and to a second checkpoint;
and, for the choice of mechanism, Ray's own `user_config` reconfiguration of 2 replicas.

    python -m benchmarks.ray_scale [--requests 400] [--rounds 2] [--switches 5]

Prints tokens/s, req/s and p50 per target, the ratios docs/ray.md gives (Ray 1 replica / uvicorn,
2 replicas / 1 replica) and the switch times (median and max).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx

from app.settings import DEFAULT_CHECKPOINT
from benchmarks.closed_loop import closed_loop, median
from benchmarks.overhead import KEY, _free_port, _wait_ready
from benchmarks.ray_reconfigure import user_config_switch_ms

ADMIN = "bench-admin-key-0123"
TARGETS = {"uvicorn": [], "ray 1 replica": ["--ray", "--replicas", "1"]}
TARGETS["ray 2 replicas"] = ["--ray", "--replicas", "2"]


@contextmanager
def _serving(flags: list[str], env: dict[str, str], port: int) -> Iterator[str]:
    """`bankllm serve [flags]` until the block ends: SIGTERM to it alone (it stops its own Ray
    cluster), then whatever is left of its process group is killed."""
    command = [sys.executable, "-m", "app.cli", "serve", "--port", str(port), *flags]
    proc = subprocess.Popen(
        command,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(f"{url}/health", proc, timeout_s=240)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        finally:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


async def _switches(url: str, count: int) -> dict[str, list[float]]:
    """POST /switch to `echo` (nothing to load) and to `twin` (a checkpoint), and back, `count`
    times each: the switch's own time, from the publication until the last replica serves."""
    admin = {"Authorization": f"Bearer {ADMIN}"}
    times: dict[str, list[float]] = {"echo": [], "twin": []}
    async with httpx.AsyncClient(base_url=url, headers=admin, timeout=300) as c:
        for _ in range(count):
            for model in ("echo", "twin"):
                for to in (model, "custom"):
                    answer = await c.post("/switch", json={"model": to})
                    answer.raise_for_status()
                    body = answer.json()
                    assert all(r["model"] == to for r in body["replicas"]), body
                    if to == model:
                        times[model].append(body["load_ms"])
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="per run (default 400)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per target (default 2)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--switches", type=int, default=5, help="switches per kind (default 5)")
    parser.add_argument(
        "--max-concurrency",
        type=int,
        default=16,
        help="MAX_CONCURRENCY: generations a replica batches (default 16, the setting's)",
    )
    args = parser.parse_args()
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in TARGETS}
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models.json"
        twin = {"checkpoint": str(DEFAULT_CHECKPOINT)}
        models.write_text(json.dumps([{"name": "twin", "backend": "custom", "options": twin}]))
        env = {
            "MODELS_FILE": str(models),
            "ENABLE_ECHO_MODEL": "true",
            "API_KEYS": KEY,
            "ADMIN_API_KEY": ADMIN,
            "LOG_LEVEL": "WARNING",
            "BENCHMARK_LOG": str(Path(tmp) / "bench.jsonl"),
            "MAX_QUEUE": "1024",
            "MAX_CONCURRENCY": str(args.max_concurrency),
        }
        for round_ in range(args.rounds):
            for name, flags in TARGETS.items():
                with _serving(flags, env, _free_port()) as url:
                    asyncio.run(closed_loop(url, 32, args.concurrency, args.max_tokens))  # warm-up
                    runs[name].append(
                        asyncio.run(
                            closed_loop(url, args.requests, args.concurrency, args.max_tokens)
                        )
                    )
                    if round_ == args.rounds - 1 and name == "ray 2 replicas":
                        switches = asyncio.run(_switches(url, args.switches))
                print(f"round {round_ + 1}: {name} done", file=sys.stderr)
    started = time.perf_counter()
    reconfigure = user_config_switch_ms(args.switches)
    print(f"(user_config measured in {time.perf_counter() - started:.0f} s)", file=sys.stderr)
    _print(runs, switches, reconfigure, args)
    return 0


def _print(
    runs: dict[str, list[dict[str, Any]]],
    switches: dict[str, list[float]],
    reconfigure: list[float],
    args: argparse.Namespace,
) -> None:
    print(
        f"\ncustom at c={args.concurrency}, {args.requests} requests x {args.rounds} rounds "
        f"(medians), max_tokens {args.max_tokens}, MAX_CONCURRENCY {args.max_concurrency}, "
        f"{os.cpu_count()} cores"
    )
    print(f"{'target':<16}{'tokens/s':>10}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'failed':>8}")
    tokens = {name: median(found, "output_throughput") for name, found in runs.items()}
    for name, found in runs.items():
        print(
            f"{name:<16}{tokens[name]:>10.0f}{median(found, 'request_throughput'):>8.1f}"
            f"{median(found, 'median_e2el_ms'):>9.1f}{median(found, 'p99_e2el_ms'):>9.1f}"
            f"{sum(r['failed'] for r in found):>8}"
        )
    one, two = tokens["ray 1 replica"], tokens["ray 2 replicas"]
    print(f"\nRay 1 replica / uvicorn: {one / tokens['uvicorn']:.2f}x tokens/s (goal >= 0.8)")
    print(f"Ray 2 replicas / 1 replica: {two / one:.2f}x tokens/s (goal >= 1.6)")
    print("\nswitch of 2 replicas, from POST /switch until both serve (ms):")
    for label, ms in (
        ("desired-model actor, to echo (fan-out only)", switches["echo"]),
        ("desired-model actor, to a checkpoint", switches["twin"]),
        ("Ray's user_config reconfigure (fan-out only)", reconfigure),
    ):
        print(f"  {label:<46} median {statistics.median(ms):>7.1f}  max {max(ms):>7.1f}")


if __name__ == "__main__":
    sys.exit(main())
