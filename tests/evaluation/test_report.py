from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.cli import main


def _write_log(path: Path) -> None:
    rows = [
        {
            "type": "request",
            "model": "custom",
            "backend": "custom",
            "status": "ok",
            "latency_ms": ms,
            "tokens_per_s": 500.0,
        }
        for ms in (100.0, 120.0, 140.0)
    ]
    rows += [
        {
            "type": "request",
            "model": "echo",
            "backend": "echo",
            "status": "ok",
            "latency_ms": 1.0,
            "tokens_per_s": 9000.0,
        },
        {
            "type": "request",
            "model": "echo",
            "backend": "echo",
            "status": "timeout",
            "latency_ms": 5.0,
            "tokens_per_s": 0.0,
        },
        {
            "type": "eval",
            "model": "custom",
            "data": "heldout.csv",
            "accuracy": 0.92,
            "macro_f1": 0.91,
            "p50_ms": 120.0,
        },
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"type": "req')


def test_report_prints_the_summary_and_draws_the_plots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_log(tmp_path / "bench.jsonl")
    code = main(["report", str(tmp_path / "bench.jsonl"), "--plot", str(tmp_path / "r.png")])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out == [
        f"5 requests, 1 evaluations in {tmp_path / 'bench.jsonl'}",
        "model   requests  p50 ms  p95 ms  p99 ms  TTFT p50 ms  tokens/s  errors  caller errors",
        "custom         3     120     138     140            -       500    0.0%              0",
        "model   labelled  accuracy  95% interval  hand-offs  billed by  per 1,000 answers  cost "
        "per 1,000",
        "custom         0         -             -       0.0%          -                  -"
        "               -",
        "echo, no model (the service's overhead): p50 1.0 ms, 9000 tok/s",  # apart, never a row
        "eval custom on heldout.csv: accuracy 92.0%, macro-F1 91.0%, p50 120 ms",
        "fastest: custom",
        "No recommendation yet: intent accuracy decides, and it needs 30 labelled answers a "
        "model; none is labelled yet (`bankllm eval --url` labels what it asks). Fastest "
        "meanwhile: custom, with 0.0% errors over 3 requests, a median latency of 120 ms (p95 "
        "138 ms) and no cost known.",
        f"figures: {tmp_path / 'r.png'}",
    ]
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_on_a_missing_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "none.jsonl")]) == 1
    assert capsys.readouterr().out == f"no log at {tmp_path / 'none.jsonl'}\n"


def _shadow_row(agree: bool | None, shadow_intent: str | None, label: str | None) -> dict[str, Any]:
    return {
        "type": "shadow",
        "model": "custom",
        "shadow_model": "custom-v2",
        "status": "ok",
        "shadow_status": "ok" if agree is not None else "upstream_error",
        "intent": "card_arrival",
        "shadow_intent": shadow_intent,
        "agree": agree,
        "label": label,
        "latency_ms": 100.0,
        "shadow_latency_ms": 80.0,
    }


def test_report_shows_each_shadow_and_the_audit_trail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "bench.jsonl"
    rows = [_shadow_row(True, "card_arrival", "card_arrival") for _ in range(3)]
    rows += [_shadow_row(False, "card_linking", "card_arrival"), _shadow_row(None, None, None)]
    rows += [
        {
            "ts": "t1",
            "type": "admin",
            "action": "start",
            "by": "service",
            "result": "done",
            "from": None,
            "to": "custom",
        },
        {
            "ts": "t2",
            "type": "admin",
            "action": "switch",
            "by": "3f2a",
            "result": "refused",
            "from": "custom",
            "to": "custom-v2",
            "conditions": [
                {"condition": "min_agreement", "required": 0.9, "measured": 0.75, "passed": False}
            ],
        },
        {
            "ts": "t3",
            "type": "admin",
            "action": "shadow_set",
            "by": "3f2a",
            "result": "done",
            "from": None,
            "to": "custom-v2",
            "sample": 0.1,
            "load_ms": 812.5,
        },
    ]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["report", str(log)]) == 0
    report = capsys.readouterr().out.splitlines()
    assert main(["report", str(log), "--audit"]) == 0
    audit = capsys.readouterr().out.splitlines()
    assert report[3:6] == [  # after the two (empty) model tables
        "shadow               mirrored samples   agree     95% interval  errors  p50 ms  live"
        "  p95 ms  live  accuracy   live",
        "custom-v2                   5       4   75.0%      30.1%-95.4%   20.0%      80   100"
        "      80   100     75.0% 100.0%",
        "  most disagreed (live -> shadow): card_arrival -> card_linking (1)",
    ]
    assert audit == [
        "time                     action        result   by            from            to"
        "              details",
        "t1                       start         done     service       -               custom"
        "          ",
        "t2                       switch        refused  3f2a          custom          custom-v2"
        "       min_agreement 0.75 vs 0.9",
        "t3                       shadow_set    done     3f2a          -               custom-v2"
        "       sample 0.1; load_ms 812.5",
    ]


def test_the_report_draws_each_model_and_version_and_puts_echo_apart() -> None:
    from app.evaluation.report_model import build_report
    from app.telemetry.recommend import Priority

    def row(version: str, ms: float, backend: str = "custom") -> dict[str, Any]:
        model = "echo" if backend == "echo" else "custom"
        return {"type": "request", "model": model, "backend": backend, "version": version,
                "status": "ok", "latency_ms": ms, "tokens_per_s": 500.0}  # fmt: skip

    rows = [row("a1", 100.0), row("b2", 120.0), row("e", 1.0, "echo"), row("e", 2.0, "echo")]
    report = build_report(rows, Priority())
    assert list(report.models) == ["custom@a1", "custom@b2"]  # two checkpoints, two curves
    assert report.overhead == ["echo, no model (the service's overhead): p50 1.5 ms, 500 tok/s"]
