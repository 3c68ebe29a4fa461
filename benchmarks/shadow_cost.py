"""What a shadow costs the live path: the custom model at c=16 with no shadow, with a shadow at
sample 0.1 and at 1.0, in one `bankllm serve` process, the three interleaved round by round
(the shadow set and cleared through POST/DELETE /shadow between runs), so the machine's noise
falls on all three alike.

    python -m benchmarks.shadow_cost [--requests 400] [--rounds 3]
        [--shadow-checkpoint DIR]   # default: the live checkpoint again (agreement 1.0)

Prints live throughput and p50/p99 per configuration, their ratios to no shadow, and what the
shadow did (mirrored, dropped, agreement with its 95% interval).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from app.settings import DEFAULT_CHECKPOINT
from benchmarks.closed_loop import closed_loop, median
from benchmarks.overhead import KEY, Target, _free_port, _serving

ADMIN = "bench-admin-key-0123"
CONFIGS: list[tuple[str, float | None]] = [
    ("no shadow", None),
    ("sample 0.1", 0.1),
    ("sample 1.0", 1.0),
]


async def _run(url: str, sample: float | None, args: argparse.Namespace) -> dict[str, Any]:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    async with httpx.AsyncClient(base_url=url, timeout=120) as control:
        if sample is None:
            (await control.delete("/shadow", headers=admin)).raise_for_status()
        else:
            body = {"model": "shadow", "sample": sample}
            (await control.post("/shadow", json=body, headers=admin)).raise_for_status()
    return await closed_loop(url, args.requests, args.concurrency, args.max_tokens)


async def _shadow_report(url: str) -> dict[str, Any]:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    async with httpx.AsyncClient(base_url=url, timeout=120) as control:
        report: dict[str, Any] = (await control.get("/shadow", headers=admin)).json()
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="per run (default 400)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per configuration")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--shadow-checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models.json"
        shadow = {"checkpoint": str(args.shadow_checkpoint)}
        models.write_text(json.dumps([{"name": "shadow", "backend": "custom", "options": shadow}]))
        port = _free_port()
        env = {
            "ACTIVE_MODEL": "custom",
            "MODELS_FILE": str(models),
            "API_KEYS": KEY,
            "ADMIN_API_KEY": ADMIN,
            "LOG_LEVEL": "WARNING",
            "BENCHMARK_LOG": str(Path(tmp) / "bench.jsonl"),
            "MAX_QUEUE": "1024",
        }
        command = [sys.executable, "-m", "app.cli", "serve", "--port", str(port)]
        url = f"http://127.0.0.1:{port}"
        target = Target("bankllm", command, env, f"{url}/generate", f"{url}/health", {}, {})
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in CONFIGS}
        with _serving(target):
            asyncio.run(_run(url, None, argparse.Namespace(**{**vars(args), "requests": 32})))
            for round_ in range(args.rounds):
                for name, sample in CONFIGS:
                    runs[name].append(asyncio.run(_run(url, sample, args)))
                    print(f"round {round_ + 1}: {name} done", file=sys.stderr)
            report = asyncio.run(_shadow_report(url))
    _print(runs, report, args)
    return 0


def _print(runs: dict[str, list[dict[str, Any]]], report: dict[str, Any], args: Any) -> None:
    print(
        f"\ncustom at c={args.concurrency}, {args.requests} requests x {args.rounds} rounds "
        f"(medians), max_tokens {args.max_tokens}"
    )
    print(
        f"{'live path':<12}{'req/s':>8}{'tokens/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'failed':>8}"
        f"{'req/s x':>9}{'p50 x':>7}"
    )
    base_rps, base_p50 = (
        median(runs["no shadow"], "request_throughput"),
        median(runs["no shadow"], "median_e2el_ms"),
    )
    for name, found in runs.items():
        rps, p50 = median(found, "request_throughput"), median(found, "median_e2el_ms")
        print(
            f"{name:<12}{rps:>8.1f}{median(found, 'output_throughput'):>10.0f}{p50:>9.1f}"
            f"{median(found, 'p99_e2el_ms'):>9.1f}{sum(r['failed'] for r in found):>8}"
            f"{rps / base_rps:>9.3f}{p50 / base_p50:>7.3f}"
        )
    f = report["shadows"].get("shadow", {})
    dropped = report["shadow"]["dropped"]
    print(
        f"\nshadow: {f.get('mirrored', 0)} mirrored, {f.get('samples', 0)} compared, dropped "
        f"{dropped or 'none'}; agreement {f.get('agreement')} (95% {f.get('agreement_95')}), "
        f"shadow p50 {f.get('p50_ms')} ms beside live {f.get('live_p50_ms')} ms"
    )


if __name__ == "__main__":
    sys.exit(main())
