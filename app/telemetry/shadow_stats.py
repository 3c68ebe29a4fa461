"""Per-shadow figures over `shadow` rows: what GET /shadow, `bankllm report` and a gated switch
judge a candidate by."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from app.banking.intents import choice
from app.telemetry.summary import percentile

Z_95 = 1.959964  # the normal quantile of a two-sided 95% interval
TOP_DISAGREEMENTS = 5


def wilson(successes: int, n: int, z: float = Z_95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion: sound at small n and near 0 or 1, where
    the normal approximation is not."""
    if n == 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)


def _ms(values: list[float], q: float) -> float | None:
    return round(percentile(values, q), 2) if values else None


def _accuracy(rows: list[Mapping[str, Any]], side: str) -> float | None:
    """The accuracy of one side (`""` live, `"shadow_"` the shadow) on labelled rows."""
    labelled = [r for r in rows if r.get("label") is not None]
    if not labelled:
        return None
    chose = [choice(r.get(f"{side}intent"), r.get(f"{side}handoff")) for r in labelled]
    right = sum(1 for r, c in zip(labelled, chose, strict=True) if c == r["label"])
    return round(right / len(labelled), 4)


def shadow_figures(rows: list[Mapping[str, Any]]) -> dict[str, Any]:
    """One shadow's figures. `samples` are the pairs both models answered: agreement is over
    them; `error_rate` is the shadow's failures over every request mirrored to it."""
    compared = [r for r in rows if r.get("agree") is not None]
    agreed = sum(bool(r["agree"]) for r in compared)
    # the shadow's own failures: not a prompt the policy blocked or a bound it refused
    failed = [r for r in rows if r.get("shadow_status") in ("upstream_error", "timeout")]
    disagreements = Counter(
        (str(r.get("intent")), str(r.get("shadow_intent"))) for r in compared if not r["agree"]
    )
    shadow_ok = [float(r["shadow_latency_ms"]) for r in rows if r.get("shadow_status") == "ok"]
    live_ok = [float(r["latency_ms"]) for r in rows if r.get("status") == "ok"]
    interval = wilson(agreed, len(compared))
    return {
        "mirrored": len(rows),
        "samples": len(compared),
        "agreement": round(agreed / len(compared), 4) if compared else None,
        "agreement_95": list(interval) if interval else None,
        "error_rate": round(len(failed) / len(rows), 4) if rows else None,
        "disagreements": [
            {"live": live, "shadow": shadow, "count": count}
            for (live, shadow), count in disagreements.most_common(TOP_DISAGREEMENTS)
        ],
        "p50_ms": _ms(shadow_ok, 50),
        "p95_ms": _ms(shadow_ok, 95),
        "live_p50_ms": _ms(live_ok, 50),
        "live_p95_ms": _ms(live_ok, 95),
        "labelled": sum(r.get("label") is not None for r in rows),
        "live_accuracy": _accuracy(rows, ""),
        "shadow_accuracy": _accuracy(rows, "shadow_"),
    }


def shadow_summary(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """{shadow model: its figures}, over every shadow row given."""
    by_shadow: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_shadow.setdefault(str(row.get("shadow_model")), []).append(row)
    return {name: shadow_figures(group) for name, group in sorted(by_shadow.items())}
