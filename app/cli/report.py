"""`bankllm report`: the per-model summary of a benchmark log, its figures and an HTML page."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from app.cli.report_tables import print_audit, print_shadows, print_table
from app.evaluation.report_html import write_html
from app.evaluation.report_model import QUALITY_COLUMNS, SPEED_COLUMNS, build_report
from app.evaluation.reporting import plot_report
from app.settings import get_settings
from app.telemetry.logfiles import log_files, read_log
from app.telemetry.recommend import Priority


def add_parser(commands: Any) -> None:
    p: argparse.ArgumentParser = commands.add_parser(
        "report",
        help="summarize a benchmark log",
        description="Per model and version: latency, speed and errors, intent accuracy with "
        "its 95%% interval, hand-offs and cost per 1,000 answers, from a JSONL benchmark log "
        "(the same figures as GET /benchmarks/summary); the evaluations and shadows in it; and "
        "a recommendation. --audit prints the admin actions instead.",
    )
    p.add_argument(
        "log",
        type=Path,
        help="a BENCHMARK_LOG file; its replicas' files beside it (<stem>.<replica>.jsonl, "
        "from Ray Serve) are read with it",
    )
    p.add_argument("--plot", type=Path, help="write the figures to this PNG")
    p.add_argument("--html", type=Path, help="write the tables and figures as an HTML page")
    p.add_argument(
        "--priority",
        choices=["accuracy", "cost", "latency"],
        help="what the recommendation puts first (default: RECOMMEND_FIRST, accuracy)",
    )
    p.add_argument(
        "--p95-budget-ms",
        type=float,
        help="the p95 latency a model must keep to be recommended (default: "
        "RECOMMEND_P95_BUDGET_MS, 3000)",
    )
    p.add_argument("--env-file", help="settings for the default priority and latency budget")
    p.add_argument("--audit", action="store_true", help="print the audit trail as a table")
    p.set_defaults(run=run)


def _priority(args: argparse.Namespace) -> Priority:
    """The flags; the service's settings (its environment and .env) only for one not given,
    so a log copied to another machine reads without the service's settings."""
    if args.priority is not None and args.p95_budget_ms is not None:
        return Priority(first=args.priority, p95_budget_ms=args.p95_budget_ms)
    settings = get_settings(args.env_file).recommend
    return Priority(
        first=args.priority or settings.first,
        p95_budget_ms=args.p95_budget_ms or settings.p95_budget_ms,
    )


def run(args: argparse.Namespace) -> int:
    files = log_files(args.log)
    if not files:
        print(f"no log at {args.log}")
        return 1
    rows = read_log(args.log)
    if args.audit:
        print_audit([r for r in rows if r.get("type") == "admin"])
        return 0
    report = build_report(rows, _priority(args))
    where = f"{args.log}" if len(files) == 1 else f"{len(files)} files of {args.log}"
    print(f"{len(report.samples)} requests, {len(report.evals)} evaluations in {where}")
    print_table(SPEED_COLUMNS, report.speed_rows())
    print_table(QUALITY_COLUMNS, report.quality_rows())
    for line in report.overhead + report.eval_lines():
        print(line)
    if report.shadows:
        print_shadows(report.shadows)
    print(f"fastest: {report.summary['fastest_model'] or '-'}")
    print(report.summary["recommendation"])
    if args.plot:
        plot_report(report, args.plot)
        print(f"figures: {args.plot}")
    if args.html:
        write_html(report, where, args.html)
        print(f"html: {args.html}")
    return 0
