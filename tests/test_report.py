from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli import main


def _write_log(path: Path) -> None:
    rows = [
        {
            "type": "request",
            "model": "custom",
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
            "status": "ok",
            "latency_ms": 1.0,
            "tokens_per_s": 9000.0,
        },
        {
            "type": "request",
            "model": "echo",
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
        "model                 count    p50 ms    p95 ms    p99 ms  tokens/s   errors",
        "custom                    3       120       138       140       500     0.0%",
        "echo                      2         1         1         1      9000    50.0%",
        "eval custom on heldout.csv: accuracy 92.0%, macro-F1 91.0%, p50 120 ms",
        "fastest: custom",
        "Use custom: the only model measured with under 50% errors, with a median latency of "
        "120 ms (p95 138 ms) and 0.0% errors over 3 requests.",
        f"plots: {tmp_path / 'r.png'}",
    ]
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_on_a_missing_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "none.jsonl")]) == 1
    assert capsys.readouterr().out == f"no log at {tmp_path / 'none.jsonl'}\n"
