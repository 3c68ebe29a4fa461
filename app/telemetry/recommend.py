"""Which model to serve, weighed as a bank weighs it: intent accuracy on labelled answers first,
then errors, cost and latency. Accuracy decides only from MIN_LABELLED labelled answers a
model, with its 95% interval; where the leader's interval overlaps the runner-up's, the two are
named as not distinguishable at this sample size. Without enough labelled answers nothing is
recommended (the fastest is named, as a figure, not a choice). A model-free `echo` measures our
own overhead and is never recommended."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

NOTHING = "No model has served enough successful requests to recommend one yet."
MIN_LABELLED = 30  # labelled answers a model needs before its accuracy can decide
_Z95 = 1.959964  # the normal quantile of a two-sided 95% interval


def wilson(right: int, n: int) -> list[float]:
    """The Wilson score interval (95%) of a share `right` of `n`: honest at small n and near
    0 or 1, where the normal approximation is not."""
    share = right / n
    centre = (share + _Z95**2 / (2 * n)) / (1 + _Z95**2 / n)
    half = _Z95 * math.sqrt(share * (1 - share) / n + _Z95**2 / (4 * n * n)) / (1 + _Z95**2 / n)
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def _cost(f: Mapping[str, Any]) -> str:
    cost = f["mean_cost_usd"]
    return f"${cost * 1000:.4f} per 1,000 answers" if cost else "no provider cost"


def _tail(f: Mapping[str, Any]) -> str:
    return (
        f"{f['error_rate']:.1%} errors over {f['count']} requests, a median latency of "
        f"{f['p50_ms']:.0f} ms (p95 {f['p95_ms']:.0f} ms) and {_cost(f)}"
    )


def _accuracy(f: Mapping[str, Any]) -> str:
    low, high = f["accuracy_interval"]
    return (
        f"{f['accuracy']:.1%} intent accuracy (95% interval {low:.1%} to {high:.1%}) on "
        f"{f['labelled']} labelled answers"
    )


def _as_shadow(f: Mapping[str, Any]) -> dict[str, Any]:
    """A shadow's figures in a served model's terms (its labelled mirrored requests)."""
    labelled, accuracy = f["labelled"], f["shadow_accuracy"]
    return {
        "count": f["mirrored"],
        "p50_ms": f["p50_ms"],
        "p95_ms": f["p95_ms"],
        "error_rate": f["error_rate"],
        "mean_cost_usd": None,  # shadow rows carry the cost of the cloud ones only
        "labelled": labelled,
        "accuracy": accuracy,
        "accuracy_interval": wilson(round(accuracy * labelled), labelled) if labelled else None,
        "shadow": True,
    }


def _candidates(
    usable: Mapping[str, Mapping[str, Any]],
    backends: Mapping[str, str],
    shadows: Mapping[str, Mapping[str, Any]],
) -> dict[str, Mapping[str, Any]]:
    """The models that may be recommended: those served (echo aside), and shadows with
    labelled figures that the live ones do not already judge."""
    candidates = {n: f for n, f in usable.items() if backends.get(n) != "echo"}
    for name, f in shadows.items():
        usable_shadow = f["p50_ms"] is not None and (f["error_rate"] or 0.0) < 0.5
        judged_live = name in candidates and candidates[name]["accuracy"] is not None
        if usable_shadow and f["shadow_accuracy"] is not None and not judged_live:
            candidates[name] = _as_shadow(f)
    return candidates


def recommend(
    usable: Mapping[str, Mapping[str, Any]],
    backends: Mapping[str, str],
    shadows: Mapping[str, Mapping[str, Any]],
) -> tuple[str | None, str]:
    """(the model, a sentence naming the figures that decided it) among `usable` models
    (answered, under 50% errors) and shadows with labelled figures; None when accuracy
    cannot decide yet."""
    candidates = _candidates(usable, backends, shadows)
    if not candidates:
        return None, NOTHING
    judged = {
        n: f
        for n, f in candidates.items()
        if f["accuracy"] is not None and f["labelled"] >= MIN_LABELLED
    }
    if not judged:
        return None, _too_few(candidates)
    ranked = sorted(
        judged,
        key=lambda n: (
            -judged[n]["accuracy"],
            judged[n]["error_rate"],
            judged[n]["mean_cost_usd"] or 0.0,
            judged[n]["p50_ms"],
        ),
    )
    name, f = ranked[0], judged[ranked[0]]
    versus = (
        f"the most accurate of {len(judged)} models with {MIN_LABELLED} or more labelled answers"
        if len(judged) > 1
        else f"the only model with {MIN_LABELLED} or more labelled answers"
    )
    shadowed = ", answered as a shadow" if f.get("shadow") else ""
    sentence = f"Use {name}: {versus} ({_accuracy(f)}{shadowed}), with {_tail(f)}."
    if len(ranked) > 1 and _overlap(f, judged[ranked[1]]):
        runner = ranked[1]
        sentence += (
            f" It is not distinguishable from {runner} ({_accuracy(judged[runner])}) at this "
            "sample size: their intervals overlap, and it leads on its errors, cost and "
            "latency; label more answers to tell them apart."
        )
    if f.get("shadow"):
        sentence += " Promote it with a gated POST /switch."
    return name, sentence


def _overlap(first: Mapping[str, Any], second: Mapping[str, Any]) -> bool:
    return bool(first["accuracy_interval"][0] <= second["accuracy_interval"][1])


def _too_few(candidates: Mapping[str, Mapping[str, Any]]) -> str:
    """Why nothing is recommended: accuracy decides, and no model has enough labels."""
    labelled = {n: f for n, f in candidates.items() if f["labelled"]}
    fastest = min(candidates, key=lambda n: candidates[n]["p50_ms"])
    if labelled:
        most = max(labelled, key=lambda n: labelled[n]["labelled"])
        count = f"the most is {labelled[most]['labelled']}, for {most}"
    else:
        count = "none is labelled yet (`bankllm eval --url` labels what it asks)"
    return (
        f"No recommendation yet: intent accuracy decides, and it needs {MIN_LABELLED} labelled "
        f"answers a model; {count}. Fastest meanwhile: {fastest}, with "
        f"{_tail(candidates[fastest])}."
    )
