"""`bankllm report`'s figures, one a question: how accurate is each model (with its 95%
interval), how long do its answers take (the latency distribution, against the budget), and
what do 1,000 answers cost. Each model and version is drawn apart; echo is a line of text."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from app.evaluation.report_model import Report
from app.telemetry.recommend import MIN_LABELLED, wilson
from app.telemetry.summary import by_version

Draw = Callable[[Axes, Report], None]


def draw_accuracy(ax: Axes, report: Report) -> None:
    """Intent accuracy per model and shadow (a diamond), its 95% interval as whiskers; one
    under the minimum of labelled answers drawn hollow (accuracy does not decide from it)."""
    judged = _judged(report)
    for row, (share, (low, high), labelled, marker) in enumerate(judged.values()):
        enough = labelled >= MIN_LABELLED
        ax.errorbar(
            share * 100,
            row,
            xerr=[[(share - low) * 100], [(high - share) * 100]],
            fmt=marker,
            capsize=4,
            color="tab:blue",
            markerfacecolor="tab:blue" if enough else "white",
        )
        ax.annotate(f"n={labelled}", (share * 100, row), xytext=(0, 7),
                    textcoords="offset points", ha="center", fontsize=8)  # fmt: skip
    ax.set_yticks(range(len(judged)), list(judged))
    ax.set_ylim(-0.7, max(0.7, len(judged) - 0.3))
    ax.set_xlim(0, 100)
    ax.set_xlabel("intent accuracy on labelled answers (%), 95% interval")
    ax.set_title("How accurate is each model?")
    if not judged:
        ax.text(0.5, 0.5, "no labelled answers yet", transform=ax.transAxes, ha="center")


def _judged(report: Report) -> dict[str, tuple[float, list[float], int, str]]:
    """name -> (accuracy, its interval, labelled answers, marker), served models then shadows."""
    judged = {
        name: (f["accuracy"], f["accuracy_interval"], f["labelled"], "o")
        for name, f in report.models.items()
        if f["accuracy"] is not None
    }
    for name, f in report.shadows.items():
        if f["shadow_accuracy"] is not None and f["labelled"]:
            right = round(f["shadow_accuracy"] * f["labelled"])
            interval = wilson(right, f["labelled"])
            judged[f"{name} (shadow)"] = (f["shadow_accuracy"], interval, f["labelled"], "D")
    return judged


def draw_latency(ax: Axes, report: Report) -> None:
    """The share of answers within each latency, per model (log scale), and the p95 budget."""
    groups = by_version(report.samples)
    drawn = 0
    for name in report.models:
        latencies = sorted(s.latency_ms for s in groups[name] if s.status == "ok")
        if latencies:
            shares = [(i + 1) / len(latencies) for i in range(len(latencies))]
            ax.step(latencies, shares, where="post", label=name)
            drawn += 1
    if (budget := report.priority.p95_budget_ms) is not None and drawn:
        ax.axvline(budget, color="tab:red", linestyle="--", label=f"p95 budget {budget:,.0f} ms")
        ax.axhline(0.95, color="grey", linewidth=0.5)
    ax.set_xscale("log")
    ax.set_xlabel("request latency (ms, log scale)")
    ax.set_ylabel("share of answers within it")
    ax.set_title("How long does each model take?")
    if drawn:
        ax.legend(fontsize=8, loc="lower right")
    if report.overhead:  # apart: with no model behind it, it is our own overhead
        ax.text(0.02, 0.98, "\n".join(report.overhead), transform=ax.transAxes, va="top",
                fontsize=7)  # fmt: skip


def draw_cost(ax: Axes, report: Report) -> None:
    """Cost per 1,000 answers per model (log scale: a cloud model's and a small local one's
    are orders of magnitude apart)."""
    priced = {n: f["cost_per_1000_usd"] for n, f in report.models.items()}
    priced = {n: cost for n, cost in priced.items() if cost}
    bars = ax.bar(list(priced), list(priced.values()), color="tab:green")
    ax.bar_label(bars, labels=[f"${c:.4g}" for c in priced.values()], fontsize=8)
    if priced:
        ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, "no priced answers", transform=ax.transAxes, ha="center")
    ax.set_ylabel("US dollars per 1,000 answers (log scale)")
    ax.set_title("What do 1,000 answers cost?")
    ax.tick_params(axis="x", labelrotation=15)


FIGURES: dict[str, Draw] = {
    "accuracy": draw_accuracy,
    "latency": draw_latency,
    "cost": draw_cost,
}


def plot_report(report: Report, path: Path) -> None:
    """The figures side by side in one PNG."""
    fig, axes = plt.subplots(1, len(FIGURES), figsize=(6 * len(FIGURES), 4.5), dpi=100)
    for ax, draw in zip(axes, FIGURES.values(), strict=True):
        draw(ax, report)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def figure_pngs(report: Report) -> dict[str, bytes]:
    """Each figure as a PNG of its own, for the HTML report."""
    pngs = {}
    for name, draw in FIGURES.items():
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
        draw(ax, report)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        plt.close(fig)
        pngs[name] = buffer.getvalue()
    return pngs
