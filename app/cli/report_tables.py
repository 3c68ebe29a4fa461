"""`bankllm report`'s shadow table and audit table, printed from benchmark-log rows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def print_shadows(shadows: Mapping[str, Mapping[str, Any]]) -> None:
    """Per shadow: samples, agreement and its 95% interval, errors, latency beside live's,
    accuracy on labelled requests, and the intents it disagrees on most."""
    print(
        f"{'shadow':<20}{'mirrored':>9}{'samples':>8}{'agree':>8}{'95% interval':>17}"
        f"{'errors':>8}{'p50 ms':>8}{'live':>6}{'p95 ms':>8}{'live':>6}"
        f"{'accuracy':>10}{'live':>7}"
    )
    for name, f in shadows.items():
        low_high = f["agreement_95"]
        interval = f"{low_high[0]:.1%}-{low_high[1]:.1%}" if low_high else "-"
        print(
            f"{name:<20}{f['mirrored']:>9}{f['samples']:>8}{_pct(f['agreement']):>8}"
            f"{interval:>17}{_pct(f['error_rate']):>8}{_ms(f['p50_ms']):>8}"
            f"{_ms(f['live_p50_ms']):>6}{_ms(f['p95_ms']):>8}{_ms(f['live_p95_ms']):>6}"
            f"{_pct(f['shadow_accuracy']):>10}{_pct(f['live_accuracy']):>7}"
        )
        if f["disagreements"]:
            pairs = ", ".join(
                f"{d['live']} -> {d['shadow']} ({d['count']})" for d in f["disagreements"]
            )
            print(f"  most disagreed (live -> shadow): {pairs}")


def _detail(row: Mapping[str, Any]) -> str:
    if row.get("result") == "refused":
        failed = [c for c in row.get("conditions", []) if not c["passed"]]
        return "; ".join(f"{c['condition']} {c['measured']} vs {c['required']}" for c in failed)
    if row.get("error_type"):
        return str(row["error_type"])
    parts = [f"{key} {row[key]}" for key in ("sample", "load_ms") if row.get(key) is not None]
    if row.get("require"):
        parts.append("require " + ", ".join(f"{k}={v}" for k, v in row["require"].items()))
    return "; ".join(parts)


def print_audit(rows: list[Mapping[str, Any]]) -> None:
    """The audit trail, one admin action a line."""
    print(f"{'time':<25}{'action':<14}{'result':<9}{'by':<14}{'from':<16}{'to':<16}details")
    for row in rows:
        print(
            f"{row.get('ts', '-'):<25}{row.get('action', '-'):<14}{row.get('result', '-'):<9}"
            f"{row.get('by', '-'):<14}{row.get('from') or '-':<16}{row.get('to') or '-':<16}"
            f"{_detail(row)}"
        )


def print_table(columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """Columns as wide as their widest cell, the first left-aligned, the others right."""
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    for cells in (columns, *rows):
        first, *rest = cells
        line = f"{first:<{widths[0]}}" + "".join(
            f"  {cell:>{width}}" for cell, width in zip(rest, widths[1:], strict=True)
        )
        print(line.rstrip())
