"""`bankllm eval`: intent accuracy, macro-F1, confusions and speed of a model on a CSV."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from app.backends.custom.gpt.checkpoint import update_meta
from app.backends.custom.options import CustomOptions
from app.backends.protocol import HANDOFF_BELOW
from app.banking.corpus import read_csv
from app.banking.intents import IntentSet
from app.banking.out_of_scope import out_of_scope_examples
from app.cli import keys
from app.cli.askers import in_process, over_http
from app.evaluation.calibration import DEFAULT_HANDOFF_SHARE, handoff_threshold
from app.evaluation.evaluate import EvalReport, ExampleAnswer, ask_all, scored
from app.models.registry import build_registry
from app.settings import Settings, get_settings
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
    p.add_argument(
        "--out-of-scope",
        action="store_true",
        help="add the kept-aside part of our out-of-scope corpus to the data, to measure how "
        "many of those the model hands off",
    )
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="choose the custom model's hand-off threshold on this data and write it into its "
        "checkpoint: answers less confident than it become `low_confidence` hand-offs",
    )
    p.add_argument(
        "--handoff-share",
        type=float,
        default=DEFAULT_HANDOFF_SHARE,
        help="with --calibrate: at most this share of the data's in-scope questions handed off "
        "(default: %(default)s)",
    )
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
    recall, right, away = (
        report.out_of_scope_recall,
        report.in_scope_accuracy,
        report.in_scope_handoffs,
    )
    parts = (
        []
        if right is None or away is None
        else [f"in scope: accuracy {right:.1%} (a hand-off counted wrong), handed off {away:.1%}"]
    )
    parts += [] if recall is None else [f"out of scope: handed off {recall:.1%}"]
    if parts:
        print("   ".join(parts))
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
    if args.out_of_scope:
        examples += out_of_scope_examples("held_out")
    api_key, admin = keys.evaluation_key(settings), keys.admin_key(settings)
    checkpoint = _calibrated_checkpoint(args, settings) if args.calibrate else None
    intents = IntentSet.load()

    async def main() -> tuple[list[ExampleAnswer], float]:
        asker = (
            over_http(args.url, args.model, args.max_tokens, api_key, admin)
            if args.url
            else in_process(settings, intents, args.model, args.max_tokens)
        )
        async with asker as ask:
            return await ask_all(ask, examples, concurrency=args.concurrency)

    answers, seconds = asyncio.run(main())
    report = scored(examples, answers, intents, data=str(args.data), seconds=seconds)
    print_report(report)
    for error, count in Counter(a.error for a in answers if a.error is not None).most_common():
        print(f"{count} failed: {error}", file=sys.stderr)
    if checkpoint is not None:
        try:
            below = handoff_threshold(examples, answers, args.handoff_share)
        except ValueError as exc:
            raise SystemExit(f"--calibrate: {exc}; {checkpoint} is unchanged") from None
        update_meta(checkpoint, **{HANDOFF_BELOW: below})
        print(
            f"hand-off threshold {below:.4f} written into {checkpoint}: at most "
            f"{args.handoff_share:.0%} of these in-scope questions handed off"
        )
    log = BenchmarkLog(
        settings.benchmark_log, settings.benchmark_every, priority=settings.recommend
    )
    log.start()
    log.append(report.row())
    log.close()
    print(f"appended an eval row to {settings.benchmark_log}")
    return 0


def _calibrated_checkpoint(args: argparse.Namespace, settings: Settings) -> Path:
    """The checkpoint folder a calibration writes to: a custom model's, asked in-process."""
    spec = build_registry(settings).get(args.model)
    if args.url or spec is None or spec.backend != "custom":
        raise SystemExit(
            "--calibrate writes into a custom model's checkpoint: name a registered custom "
            "model, asked in-process (without --url)"
        )
    return spec.options_as(CustomOptions).checkpoint
