"""`bankllm report`: the per-model summary of a benchmark log, and its plots."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from app.cli.report_tables import print_audit, print_shadows
from app.evaluation.reporting import plot_report
from app.telemetry.logfiles import log_files, read_log
from app.telemetry.shadow_stats import shadow_summary
from app.telemetry.summary import Sample, summarize


def add_parser(commands: Any) -> None:
    p: argparse.ArgumentParser = commands.add_parser(
        "report",
        help="summarize a benchmark log",
        description="Per-model latency, speed and errors from a JSONL benchmark log (the same "
        "figures as GET /benchmarks/summary), the evaluations and shadows in it (as GET "
        "/shadow), and a recommendation; --audit prints the admin actions instead.",
    )
    p.add_argument(
        "log",
        type=Path,
        help="a BENCHMARK_LOG file; its replicas' files beside it (<stem>.<replica>.jsonl, "
        "from Ray Serve) are read with it",
    )
    p.add_argument("--plot", type=Path, help="write the plots to this PNG")
    p.add_argument("--audit", action="store_true", help="print the audit trail as a table")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    files = log_files(args.log)
    if not files:
        print(f"no log at {args.log}")
        return 1
    rows = read_log(args.log)
    if args.audit:
        print_audit([r for r in rows if r.get("type") == "admin"])
        return 0
    samples = [Sample.from_row(r) for r in rows if r.get("type") == "request"]
    evals = [r for r in rows if r.get("type") == "eval"]
    shadows = shadow_summary(r for r in rows if r.get("type") == "shadow")
    summary = summarize(samples, shadows)
    where = f"{args.log}" if len(files) == 1 else f"{len(files)} files of {args.log}"
    print(f"{len(samples)} requests, {len(evals)} evaluations in {where}")
    print(
        f"{'model':<20}{'count':>7}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}"
        f"{'tokens/s':>10}{'errors':>9}"
    )
    for name, f in summary["models"].items():
        cells = [f["p50_ms"], f["p95_ms"], f["p99_ms"], f["mean_tokens_per_s"]]
        shown = "".join(f"{'-' if v is None else f'{v:.0f}':>10}" for v in cells)
        print(f"{name:<20}{f['count']:>7}{shown}{f['error_rate']:>9.1%}")
    for e in evals:
        print(
            f"eval {e['model']} on {e['data']}: accuracy {e['accuracy']:.1%}, macro-F1 "
            f"{e['macro_f1']:.1%}, p50 {e['p50_ms']:.0f} ms"
        )
    if shadows:
        print_shadows(shadows)
    print(f"fastest: {summary['fastest_model'] or '-'}")
    print(summary["recommendation"])
    if args.plot:
        plot_report(samples, evals, args.plot)
        print(f"plots: {args.plot}")
    return 0
