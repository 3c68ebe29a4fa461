"""`bankllm report`'s plots: latency CDF and tokens/s per model, accuracy against latency."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt

from app.telemetry.summary import Sample, by_version


def plot_report(samples: Sequence[Sample], evals: Sequence[dict[str, Any]], path: Path) -> None:
    """One PNG: latency CDF per model, mean tokens/s per model, and (with eval rows) each
    evaluation's accuracy against its median latency."""
    panels = 3 if evals else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4), dpi=100)
    groups = by_version(samples)  # labelled as the summary names them: name, or name@version
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
    speed.set_yscale("log")  # a model-free echo and a real model differ by orders of magnitude
    speed.set_ylabel("mean tokens/s per request (log scale)")
    speed.set_title("decoding speed")
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
