"""`bankllm report --html`: one self-contained page (its figures inlined as PNGs) with the
same tables, figures and recommendation as the text report, escaped by Jinja2."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from app.evaluation.report_model import QUALITY_COLUMNS, SPEED_COLUMNS, Report, percent
from app.evaluation.reporting import figure_pngs
from app.telemetry.recommend import MIN_LABELLED

CAPTIONS = {
    "accuracy": "Intent accuracy on labelled answers, with its 95% interval (hollow: fewer "
    f"than {MIN_LABELLED} labelled answers, too few to decide on)",
    "latency": "The share of answers within each latency, per model, against the p95 budget",
    "cost": "Cost per 1,000 answers: a cloud model's tokens at its price, a local model's "
    "machine time at its hourly price (docs/operations.md, Cost)",
}
_TEMPLATES = Environment(
    loader=PackageLoader("app.evaluation", "templates"),
    autoescape=select_autoescape(["html"]),
)


def tables(report: Report) -> list[dict[str, Any]]:
    shadows = [
        (name, str(f["mirrored"]), percent(f["agreement"]), percent(f["shadow_accuracy"]))
        for name, f in report.shadows.items()
    ]
    return [
        {
            "id": "speed",
            "title": "Speed and errors",
            "columns": SPEED_COLUMNS,
            "rows": report.speed_rows(),
        },
        {
            "id": "quality",
            "title": "Accuracy and cost",
            "columns": QUALITY_COLUMNS,
            "rows": report.quality_rows(),
        },
        *(
            [
                {
                    "id": "shadows",
                    "title": "Shadows",
                    "columns": ("shadow", "mirrored", "agreement", "accuracy"),
                    "rows": shadows,
                }
            ]
            if shadows
            else []
        ),
    ]


def write_html(report: Report, source: str, path: Path) -> None:
    figures = [
        {"name": name, "caption": CAPTIONS[name], "png": base64.b64encode(png).decode()}
        for name, png in figure_pngs(report).items()
    ]
    page = _TEMPLATES.get_template("report.html").render(
        report=report,
        source=source,
        requests=len(report.samples),
        min_labelled=MIN_LABELLED,
        figures=figures,
        tables=tables(report),
    )
    path.write_text(page, encoding="utf-8")
