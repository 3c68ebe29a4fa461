"""`bankllm bench`: a closed-loop load against a running service's /generate."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import httpx

from app.banking.corpus import read_csv
from app.cli import keys
from app.evaluation.loadtest import error_of, figures, run_load
from app.settings import get_settings
from app.telemetry.benchlog import BenchmarkLog
from app.telemetry.clock import utc_now

DEFAULT_PROMPTS = (
    "I still have not received my new card",
    "I lost my card",
    "how do I change my PIN",
    "why was I charged a fee for my transfer",
    "my top up is still pending",
    "can I get a refund for this purchase",
    "what exchange rate do you use",
    "I want to close my account",
)
_SHOWN = ("ttft", "tpot", "itl", "e2el")


def add_parser(commands: Any) -> None:
    p: argparse.ArgumentParser = commands.add_parser(
        "bench",
        help="load-test a running service",
        description="Closed-loop load on /generate: at each concurrency level, that many "
        "clients each send their next request when the last one ends. Prints vLLM-style "
        "figures and appends one `bench` row per level to the benchmark log.",
    )
    p.add_argument("--url", required=True, help="e.g. http://127.0.0.1:8000")
    p.add_argument("--concurrency", default="1,8,32", help="levels, comma-separated")
    p.add_argument("--requests", type=int, default=64, help="per level (default 64)")
    p.add_argument("--stream", action="store_true", help="stream: client-side TTFT and ITL")
    p.add_argument("--prompts", type=Path, help="a CSV with a text column (default: built in)")
    p.add_argument("--model", help="switch the service to this model first (admin key)")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--slo-ttft-ms", type=float, help="goodput: TTFT at most this")
    p.add_argument("--slo-e2e-ms", type=float, help="goodput: end-to-end latency at most this")
    p.add_argument("--json", type=Path, help="write every level's figures to this file")
    p.add_argument("--env-file", help="settings for the log path and default keys")
    p.set_defaults(run=run)


def _table(rows: list[dict[str, Any]]) -> str:
    head = f"{'c':>4} {'ok':>5} {'fail':>5} {'req/s':>8} {'tok/s':>8}"
    head += "".join(f" {n + ' p50/p90/p99 ms':>26}" for n in _SHOWN)
    lines = [head]
    for r in rows:
        line = (
            f"{r['concurrency']:>4} {r['completed']:>5} {r['failed']:>5} "
            f"{r['request_throughput']:>8.2f} {r['output_throughput']:>8.1f}"
        )
        for n in _SHOWN:
            cells = [r[f"median_{n}_ms"], r[f"p90_{n}_ms"], r[f"p99_{n}_ms"]]
            text = "/".join("-" if v is None else f"{v:.0f}" for v in cells)
            line += f" {text:>26}"
        if "request_goodput" in r:
            line += f"  goodput {r['request_goodput']:.2f} req/s"
        lines.append(line)
    return "\n".join(lines)


async def _bench(
    args: argparse.Namespace, api_key: str | None, admin_key: str | None
) -> list[dict[str, Any]]:
    prompts = [e.text for e in read_csv(args.prompts)] if args.prompts else list(DEFAULT_PROMPTS)
    levels = [int(c) for c in str(args.concurrency).split(",") if c.strip()]
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=max(levels) + 4)
    async with httpx.AsyncClient(
        base_url=args.url, headers=headers, timeout=600, limits=limits
    ) as client:
        if args.model:
            admin = {"Authorization": f"Bearer {admin_key}"} if admin_key else {}
            switched = await client.post("/switch", json={"model": args.model}, headers=admin)
            if switched.status_code != 200:
                raise SystemExit(f"could not switch to {args.model!r}: {error_of(switched)}")
        health = (await client.get("/health")).json()
        rows = []
        for c in levels:
            outcomes, duration = await run_load(
                client,
                prompts,
                concurrency=c,
                requests=args.requests,
                stream=args.stream,
                max_tokens=args.max_tokens,
            )
            rows.append(
                {
                    "ts": utc_now(),
                    "type": "bench",
                    "url": args.url,
                    "model": health.get("model"),
                    "backend": health.get("backend"),
                    "version": health.get("version"),
                    "concurrency": c,
                    "stream": args.stream,
                    "max_tokens": args.max_tokens,
                    **figures(outcomes, duration, args.slo_ttft_ms, args.slo_e2e_ms),
                }
            )
        return rows


def run(args: argparse.Namespace) -> int:
    settings = get_settings(args.env_file)
    rows = asyncio.run(_bench(args, keys.user_key(settings), keys.admin_key(settings)))
    print(
        f"model {rows[0]['model']} ({rows[0]['backend']}, version {rows[0]['version']}) at "
        f"{args.url}, {args.requests} requests per level, max_tokens {args.max_tokens}, "
        f"{'streamed' if args.stream else 'not streamed'}"
    )
    print(_table(rows))
    for row in rows:
        for error, count in row["errors"].items():
            print(f"c={row['concurrency']}: {count} failed: {error}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    log = BenchmarkLog(
        settings.benchmark_log, settings.benchmark_every, priority=settings.recommend
    )
    log.start()
    for row in rows:
        log.append(row)
    log.close()
    return 1 if not any(row["completed"] for row in rows) else 0  # nothing answered
