"""The Grafana dashboard, as code: `python docker/grafana/dashboard.py` writes
docker/grafana/dashboards/bankllm.json (provisioned by the `monitoring` profile), and with
`--layout PNG` draws the panel layout with each panel's queries."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards" / "bankllm.json"
RATE = "$__rate_interval"


def _quantiles(metric: str, by: str = "model") -> list[tuple[str, str]]:
    return [
        (
            f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket[{RATE}])))",
            f"p{round(q * 100)} {{{{{by}}}}}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


# (title, unit, [(PromQL, legend)], (x, y, w, h))
PANELS: list[tuple[str, str, list[tuple[str, str]], tuple[int, int, int, int]]] = [
    (
        "Request latency p50 / p95 / p99",
        "s",
        _quantiles("bankllm_request_latency_seconds"),
        (0, 0, 12, 8),
    ),
    (
        "Time to first token p50 / p95 / p99",
        "s",
        _quantiles("bankllm_time_to_first_token_seconds"),
        (12, 0, 12, 8),
    ),
    (
        "Time per output token p50 / p95 / p99",
        "s",
        _quantiles("bankllm_time_per_output_token_seconds"),
        (0, 8, 12, 8),
    ),
    (
        "Output tokens/s",
        "none",
        [(f"sum by (model) (rate(bankllm_completion_tokens_total[{RATE}]))", "{{model}}")],
        (12, 8, 12, 8),
    ),
    (
        "Requests/s by status",
        "reqps",
        [(f"sum by (status) (rate(bankllm_requests_total[{RATE}]))", "{{status}}")],
        (0, 16, 8, 8),
    ),
    (
        "Queue depth and requests in flight",
        "none",
        [
            ("sum(bankllm_queue_depth)", "waiting"),  # summed over replicas (Ray Serve)
            ("sum by (model) (bankllm_requests_in_flight)", "generating {{model}}"),
        ],
        (8, 16, 8, 8),
    ),
    (
        "Active model (replicas serving it)",
        "none",
        [
            (
                "count by (model, backend, version) (bankllm_active_model_info == 1)",
                "{{model}} ({{backend}}, {{version}})",
            )
        ],
        (16, 16, 8, 8),
    ),
    (
        "Model switches",
        "none",
        [
            ("sum by (result) (increase(bankllm_model_switches_total[1h]))", "{{result}} / 1h"),
            *_quantiles("bankllm_model_switch_seconds", by="to")[:1],
        ],
        (0, 24, 8, 8),
    ),
    (
        "Cloud: fallbacks, redactions, cost",
        "none",
        [
            (
                f"sum by (model) (rate(bankllm_fallbacks_total[{RATE}]))",
                "fallbacks/s from {{model}}",
            ),
            (f"sum by (kind) (rate(bankllm_pii_redactions_total[{RATE}]))", "{{kind}} redacted/s"),
            ("sum by (model) (increase(bankllm_cost_usd_total[1h]))", "USD/h {{model}}"),
        ],
        (8, 24, 16, 8),
    ),
    (
        "Shadow: intent agreement with live (1h)",
        "percentunit",
        [
            (
                'sum by (shadow) (increase(bankllm_shadow_agreement_total{agree="true"}[1h])) / '
                "sum by (shadow) (increase(bankllm_shadow_agreement_total[1h]))",
                "{{shadow}}",
            )
        ],
        (0, 32, 8, 8),
    ),
    (
        "Shadow: answers and drops",
        "reqps",
        [
            (
                f"sum by (shadow, status) (rate(bankllm_shadow_requests_total[{RATE}]))",
                "{{shadow}} {{status}}",
            ),
            (
                f"sum by (reason) (rate(bankllm_shadow_dropped_total[{RATE}]))",
                "dropped: {{reason}}",
            ),
        ],
        (8, 32, 8, 8),
    ),
    (
        "Shadow latency p50 beside live",
        "s",
        [
            *_quantiles("bankllm_shadow_latency_seconds", by="shadow")[:1],
            *_quantiles("bankllm_request_latency_seconds")[:1],
        ],
        (16, 32, 8, 8),
    ),
]


def dashboard() -> dict[str, Any]:
    panels = []
    for i, (title, unit, queries, (x, y, w, h)) in enumerate(PANELS, start=1):
        panels.append(
            {
                "id": i,
                "type": "stat" if title == "Active model" else "timeseries",
                "title": title,
                "gridPos": {"x": x, "y": y, "w": w, "h": h},
                "datasource": {"type": "prometheus", "uid": "prometheus"},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "targets": [
                    {
                        "refId": chr(ord("A") + j),
                        "datasource": {"type": "prometheus", "uid": "prometheus"},
                        "expr": expr,
                        "legendFormat": legend,
                    }
                    for j, (expr, legend) in enumerate(queries)
                ],
            }
        )
    return {
        "uid": "bankllm",
        "title": "bankllm",
        "tags": ["bankllm"],
        "timezone": "utc",
        "schemaVersion": 39,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "panels": panels,
    }


def draw_layout(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    bottom = max(y + h for *_, (_, y, _, h) in PANELS)
    fig, ax = plt.subplots(figsize=(14, 9 * bottom / 32))
    for title, unit, queries, (x, y, w, h) in PANELS:
        ax.add_patch(Rectangle((x, y), w, h, fill=True, facecolor="#f3f6fb", edgecolor="#335"))
        ax.text(x + 0.3, y + 0.8, title, fontsize=10, weight="bold", va="top")
        for k, (expr, _) in enumerate(queries[:3]):
            short = expr if len(expr) < 8 * w else expr[: 8 * w - 1] + "…"
            ax.text(x + 0.3, y + 2.2 + 1.3 * k, short, fontsize=6.5, family="monospace", va="top")
        ax.text(x + w - 0.3, y + h - 0.4, f"unit: {unit}", fontsize=7, ha="right", color="#666")
    ax.set_xlim(0, 24)
    ax.set_ylim(bottom, 0)
    ax.axis("off")
    ax.set_title("bankllm Grafana dashboard: panel layout and queries")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layout", type=Path, help="also draw the panel layout to this PNG")
    args = parser.parse_args()
    OUT.write_text(json.dumps(dashboard(), indent=2) + "\n")
    print(f"wrote {OUT}")
    if args.layout:
        draw_layout(args.layout)
        print(f"wrote {args.layout}")


if __name__ == "__main__":
    main()
