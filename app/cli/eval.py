"""`bankllm eval`: intent accuracy, macro-F1, confusions and speed of a model on a CSV."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from app.banking.corpus import read_csv
from app.banking.intents import IntentSet
from app.cli import keys
from app.cli.askers import in_process, over_http
from app.evaluation.evaluate import EvalReport, evaluate
from app.settings import get_settings
from app.telemetry.benchlog import BenchmarkLog


def add_parser(commands: Any) -> None:
    p: argparse.ArgumentParser = commands.add_parser(
        "eval",
        help="score a model on a text,category CSV",
        description="Send each row's text to the model (in-process, or to a running service "
        "with --url), parse the intent from the reply and score it. Appends one `eval` row to "
        "the benchmark log.",
    )
    p.add_argument("--model", required=True, help="a registered model name")
    p.add_argument("--data", type=Path, required=True, help="a text,category CSV")
    p.add_argument("--limit", type=int, help="only the first N rows")
    p.add_argument("--url", help="a running service, e.g. http://127.0.0.1:8000")
    p.add_argument("--env-file", help="settings for the in-process model and the log path")
    p.add_argument("--concurrency", type=int, default=1, help="requests at once (default 1)")
    p.add_argument("--max-tokens", type=int, default=64, help="per answer (default 64)")
    p.set_defaults(run=run)


def print_report(report: EvalReport) -> None:
    print(
        f"model {report.model} ({report.backend}, version {report.version}) on "
        f"{report.examples} examples of {report.data}"
    )
    print(
        f"accuracy {report.accuracy:.1%}   macro-F1 {report.macro_f1:.1%}   "
        f"approved reply {report.reply_match:.1%}   no intent {report.unparsed}   "
        f"failed {report.errors}"
    )
    print(
        f"latency p50 {report.p50_ms:.0f} ms   p95 {report.p95_ms:.0f} ms   "
        f"{report.tokens_per_s:.0f} tokens/s   {report.seconds:.0f} s in all"
    )
    if report.confused:
        print("most confused (count: true -> predicted):")
        for true, predicted, count in report.confused:
            print(f"  {count:4d}: {true} -> {predicted}")


def run(args: argparse.Namespace) -> int:
    settings = get_settings(args.env_file)
    examples = read_csv(args.data)[: args.limit]
    api_key, admin = keys.evaluation_key(settings), keys.admin_key(settings)

    intents = IntentSet.load()

    async def main() -> EvalReport:
        asker = (
            over_http(args.url, args.model, args.max_tokens, api_key, admin)
            if args.url
            else in_process(settings, intents, args.model, args.max_tokens)
        )
        async with asker as ask:
            return await evaluate(
                ask, examples, intents, data=str(args.data), concurrency=args.concurrency
            )

    report = asyncio.run(main())
    print_report(report)
    log = BenchmarkLog(settings.benchmark_log, settings.benchmark_every)
    log.start()
    log.append(report.row())
    log.close()
    print(f"appended an eval row to {settings.benchmark_log}")
    return 0
