"""What `bankllm report` shows, worked out once from a benchmark log's rows: the per-model
figures and their table cells, echo apart, the evaluations, the shadows and the
recommendation. The text report and the HTML report print the same cells."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.telemetry.recommend import Priority
from app.telemetry.shadow_stats import shadow_summary
from app.telemetry.summary import Sample, by_version, percentile, summarize

Row = Mapping[str, Any]

# the headings of the table of speed and errors, and of that of quality and cost
SPEED_COLUMNS = (
    "model",
    "requests",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "TTFT p50 ms",
    "tokens/s",
    "errors",
    "caller errors",
)
QUALITY_COLUMNS = (
    "model",
    "labelled",
    "accuracy",
    "95% interval",
    "hand-offs",
    "billed by",
    "per 1,000 answers",
    "cost per 1,000",
)
_BILLED_BY = {"CPU-s": "CPU time", "GPU-s": "GPU time"}


@dataclass(frozen=True)
class Report:
    samples: list[Sample]
    models: dict[str, Row]  # name (or name@version) -> the summary's figures; echo apart
    overhead: list[str]  # a line per echo model: the service's own overhead
    evals: list[Row]
    shadows: dict[str, Row]
    summary: Row  # fastest_model, recommended_model, recommendation
    priority: Priority

    def speed_rows(self) -> list[tuple[str, ...]]:
        return [_speed_cells(name, f) for name, f in self.models.items()]

    def quality_rows(self) -> list[tuple[str, ...]]:
        return [_quality_cells(name, f) for name, f in self.models.items()]

    def eval_lines(self) -> list[str]:
        return [
            f"eval {e['model']} on {e['data']}: accuracy {e['accuracy']:.1%}, macro-F1 "
            f"{e['macro_f1']:.1%}, p50 {e['p50_ms']:.0f} ms"
            for e in self.evals
        ]


def build_report(rows: Sequence[Row], priority: Priority) -> Report:
    samples = [Sample.from_row(r) for r in rows if r.get("type") == "request"]
    shadows = shadow_summary(r for r in rows if r.get("type") == "shadow")
    summary = summarize(samples, shadows, priority)
    echo = {name: g for name, g in by_version(samples).items() if g[-1].backend == "echo"}
    models = {n: f for n, f in summary["models"].items() if n not in echo}
    return Report(
        samples,
        models,
        [_overhead(name, group) for name, group in echo.items() if _ok(group)],
        [r for r in rows if r.get("type") == "eval"],
        dict(shadows),
        summary,
        priority,
    )


def _ok(group: list[Sample]) -> list[Sample]:
    return [s for s in group if s.status == "ok"]


def _overhead(name: str, group: list[Sample]) -> str:
    ok = _ok(group)
    p50 = percentile([s.latency_ms for s in ok], 50)
    rate = sum(s.tokens_per_s for s in ok) / len(ok)
    return f"{name}, no model (the service's overhead): p50 {p50:.1f} ms, {rate:.0f} tok/s"


def _number(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _speed_cells(name: str, f: Row) -> tuple[str, ...]:
    return (
        name,
        str(f["count"]),
        _number(f["p50_ms"]),
        _number(f["p95_ms"]),
        _number(f["p99_ms"]),
        _number(f["p50_ttft_ms"]),
        _number(f["mean_tokens_per_s"]),
        percent(f["error_rate"]),
        str(f["caller_errors"]),
    )


def _quality_cells(name: str, f: Row) -> tuple[str, ...]:
    interval = f["accuracy_interval"]
    unit = f["machine_unit"]
    cost = f["cost_per_1000_usd"]
    billed = _BILLED_BY.get(unit, str(unit)) if unit else ("tokens" if cost else "-")
    return (
        name,
        str(f["labelled"]),
        percent(f["accuracy"]),
        "-" if interval is None else f"{interval[0]:.1%}-{interval[1]:.1%}",
        percent(f["handoff_rate"]),
        billed,
        "-" if f["machine_per_1000"] is None else f"{f['machine_per_1000']:,.1f} {unit}",
        f"${cost:.4f}" if cost else "-",  # none, or not priced
    )
