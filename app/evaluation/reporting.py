"""`bankllm report`'s plots: latency CDF and tokens/s per model, accuracy against latency."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt

from app.telemetry.summary import Sample, by_version, percentile


def models_and_overhead(samples: Sequence[Sample]) -> tuple[dict[str, list[Sample]], str]:
    """The samples of each model (labelled as the summary names them: name, or name@version),
    and a line on echo's, the service's own overhead, which no model is measured against."""
    groups = by_version(samples)
    echo = {name: g for name, g in groups.items() if g[-1].backend == "echo"}
    lines = []
    for name, group in echo.items():
        ok = [s for s in group if s.status == "ok"]
        if ok:
            p50 = percentile([s.latency_ms for s in ok], 50)
            rate = sum(s.tokens_per_s for s in ok) / len(ok)
            lines.append(
                f"{name}, no model (the service's overhead): p50 {p50:.1f} ms, {rate:.0f} tok/s"
            )
    models = {name: g for name, g in groups.items() if name not in echo}
    return models, "\n".join(lines)


def plot_report(samples: Sequence[Sample], evals: Sequence[dict[str, Any]], path: Path) -> None:
    """One PNG: latency CDF per model, mean tokens/s per model, and (with eval rows) each
    evaluation's accuracy against its median latency."""
    panels = 3 if evals else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4), dpi=100)
    groups, overhead = models_and_overhead(samples)
    models = list(groups)
    cdf, speed = axes[0], axes[1]
    for model, group in groups.items():
        latencies = sorted(s.latency_ms for s in group if s.status == "ok")
        if latencies:
            fractions = [(i + 1) / len(latencies) for i in range(len(latencies))]
            cdf.step(latencies, fractions, where="post", label=model)
    cdf.set_xscale("log")
    cdf.set_xlabel("request latency (ms, log scale)")
    cdf.set_ylabel("share of requests")
    cdf.set_title("latency CDF")
    if models:
        cdf.legend()
    rates = []
    for group in groups.values():
        ok = [s.tokens_per_s for s in group if s.status == "ok"]
        rates.append(sum(ok) / len(ok) if ok else 0.0)
    speed.bar(models, rates, color="tab:green")
    speed.set_ylabel("mean tokens/s per request")
    speed.set_title("decoding speed")
    if overhead:  # apart: with no model behind it, it would dwarf every bar
        speed.text(0.02, 0.98, overhead, transform=speed.transAxes, va="top", fontsize=8)
    if evals:
        accuracy = axes[2]
        for row in evals:
            accuracy.scatter(row["p50_ms"], row["accuracy"] * 100)
            accuracy.annotate(str(row["model"]), (row["p50_ms"], row["accuracy"] * 100))
        accuracy.set_xlabel("median latency (ms)")
        accuracy.set_ylabel("intent accuracy (%)")
        accuracy.set_title("accuracy against latency (eval rows)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
