"""Which model to serve, weighed as a bank weighs it: intent accuracy on labelled requests
first, then errors, cost and latency; speed alone only when nothing is labelled, and saying so.
A model-free `echo` measures our own overhead and is never recommended."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

NOTHING = "No model has served enough successful requests to recommend one yet."


def _cost(f: Mapping[str, Any]) -> str:
    cost = f["mean_cost_usd"]
    return f"${cost:.6f} per request" if cost else "no provider cost"


def _tail(f: Mapping[str, Any]) -> str:
    return (
        f"{f['error_rate']:.1%} errors over {f['count']} requests, a median latency of "
        f"{f['p50_ms']:.0f} ms (p95 {f['p95_ms']:.0f} ms) and {_cost(f)}"
    )


def _as_shadow(f: Mapping[str, Any]) -> dict[str, Any]:
    """A shadow's figures in a served model's terms (its labelled mirrored requests)."""
    return {
        "count": f["mirrored"],
        "p50_ms": f["p50_ms"],
        "p95_ms": f["p95_ms"],
        "error_rate": f["error_rate"],
        "mean_cost_usd": None,  # shadow rows carry the cost of the cloud ones only
        "labelled": f["labelled"],
        "accuracy": f["shadow_accuracy"],
        "shadow": True,
    }


def recommend(
    usable: Mapping[str, Mapping[str, Any]],
    backends: Mapping[str, str],
    shadows: Mapping[str, Mapping[str, Any]],
) -> tuple[str | None, str]:
    """(the model, a sentence naming the figures that decided it) among `usable` models
    (answered, under 50% errors) and shadows with labelled figures."""
    candidates = {n: f for n, f in usable.items() if backends.get(n) != "echo"}
    for name, f in shadows.items():
        usable_shadow = f["p50_ms"] is not None and (f["error_rate"] or 0.0) < 0.5
        judged_live = name in candidates and candidates[name]["accuracy"] is not None
        if usable_shadow and f["shadow_accuracy"] is not None and not judged_live:
            candidates[name] = _as_shadow(f)
    if not candidates:
        return None, NOTHING
    judged = {n: f for n, f in candidates.items() if f["accuracy"] is not None}
    if judged:
        name = max(
            judged,
            key=lambda n: (
                judged[n]["accuracy"],
                -judged[n]["error_rate"],
                -(judged[n]["mean_cost_usd"] or 0.0),
                -judged[n]["p50_ms"],
            ),
        )
        f = judged[name]
        versus = (
            f"the most accurate of {len(judged)} models with labelled requests"
            if len(judged) > 1
            else "the only model with labelled requests"
        )
        accuracy = f"{f['accuracy']:.1%} intent accuracy on {f['labelled']} labelled requests"
        if f.get("shadow"):
            return name, (
                f"Use {name}: {versus} ({accuracy}, answered as a shadow), with {_tail(f)}; "
                "promote it with a gated POST /switch."
            )
        return name, f"Use {name}: {versus} ({accuracy}), with {_tail(f)}."
    name = min(candidates, key=lambda n: candidates[n]["p50_ms"])
    f = candidates[name]
    versus = (
        f"the fastest of {len(candidates)} models measured"
        if len(candidates) > 1
        else "the only model measured"
    )
    return name, (
        f"Use {name}, on speed alone (no labelled requests to judge accuracy by): {versus}, "
        f"with {_tail(f)}."
    )
