"""Which model to serve, weighed as a bank weighs it: by default intent accuracy on labelled
answers first, among the models within a latency budget (their p95), then errors, cost and
latency; or, by a stated priority, the cheapest or the fastest of the models as accurate as the
most accurate at this sample size. Accuracy decides only from MIN_LABELLED labelled answers a
model, with its 95% interval; where the leader's interval overlaps the runner-up's, the two are
named as not distinguishable at this sample size. Without enough labelled answers nothing is
recommended (the fastest is named, as a figure, not a choice). A model-free `echo` measures our
own overhead and is never recommended."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

NOTHING = "No model has served enough successful requests to recommend one yet."
MIN_LABELLED = 30  # labelled answers a model needs before its accuracy can decide
_Z95 = 1.959964  # the normal quantile of a two-sided 95% interval

Figures = Mapping[str, Any]
P95_BUDGET_MS = 3000.0  # a chat reply a customer waits for, at the 95th percentile


class Priority(BaseModel):
    """What the recommendation puts first, and the p95 latency a model must keep to be
    recommended at all (None: any). Settings RECOMMEND_FIRST and RECOMMEND_P95_BUDGET_MS."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    first: Literal["accuracy", "cost", "latency"] = "accuracy"
    p95_budget_ms: float | None = Field(P95_BUDGET_MS, gt=0)

    def allows(self, f: Figures) -> bool:
        return self.p95_budget_ms is None or f["p95_ms"] <= self.p95_budget_ms

    def key(self, f: Figures) -> tuple[float, ...]:
        """The order of the candidates, best first: the priority, then the rest."""
        cost = math.inf if f["cost_per_1000_usd"] is None else f["cost_per_1000_usd"]
        accuracy = -f["accuracy"]
        if self.first == "cost":
            return (cost, accuracy, f["error_rate"], f["p95_ms"])
        if self.first == "latency":
            return (f["p95_ms"], accuracy, f["error_rate"], cost)
        return (accuracy, f["error_rate"], cost, f["p50_ms"])

    @property
    def budget(self) -> str:
        return "" if self.p95_budget_ms is None else f"a p95 within {self.p95_budget_ms:,.0f} ms"


DEFAULT_PRIORITY = Priority()  # accuracy first, within a 3-second p95


def wilson(right: int, n: int) -> list[float]:
    """The Wilson score interval (95%) of a share `right` of `n`: honest at small n and near
    0 or 1, where the normal approximation is not."""
    share = right / n
    centre = (share + _Z95**2 / (2 * n)) / (1 + _Z95**2 / n)
    half = _Z95 * math.sqrt(share * (1 - share) / n + _Z95**2 / (4 * n * n)) / (1 + _Z95**2 / n)
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def _cost(f: Figures) -> str:
    cost = f["cost_per_1000_usd"]
    return "no cost known" if cost is None else f"${cost:.4f} per 1,000 answers"


def _tail(f: Figures) -> str:
    return (
        f"{f['error_rate']:.1%} errors over {f['count']} requests, a median latency of "
        f"{f['p50_ms']:.0f} ms (p95 {f['p95_ms']:.0f} ms) and {_cost(f)}"
    )


def _accuracy(f: Figures) -> str:
    low, high = f["accuracy_interval"]
    return (
        f"{f['accuracy']:.1%} intent accuracy (95% interval {low:.1%} to {high:.1%}) on "
        f"{f['labelled']} labelled answers"
    )


def _as_shadow(f: Figures) -> dict[str, Any]:
    """A shadow's figures in a served model's terms (its labelled mirrored requests)."""
    labelled, accuracy = f["labelled"], f["shadow_accuracy"]
    return {
        "count": f["mirrored"],
        "p50_ms": f["p50_ms"],
        "p95_ms": f["p95_ms"],
        "error_rate": f["error_rate"],
        "cost_per_1000_usd": None,  # shadow rows carry the cost of the cloud ones only
        "labelled": labelled,
        "accuracy": accuracy,
        "accuracy_interval": wilson(round(accuracy * labelled), labelled) if labelled else None,
        "shadow": True,
    }


def _candidates(
    usable: Mapping[str, Figures],
    backends: Mapping[str, str],
    shadows: Mapping[str, Figures],
) -> dict[str, Figures]:
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
    usable: Mapping[str, Figures],
    backends: Mapping[str, str],
    shadows: Mapping[str, Figures],
    priority: Priority = DEFAULT_PRIORITY,
) -> tuple[str | None, str]:
    """(the model, a sentence naming the figures that decided it) among `usable` models
    (answered, under 50% errors) and shadows with labelled figures; None when accuracy
    cannot decide yet, or no model keeps to the latency budget."""
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
    within = {n: f for n, f in judged.items() if priority.allows(f)}
    slow = _over_budget({n: f for n, f in judged.items() if n not in within}, priority)
    if not within:
        return None, f"No recommendation: no model with {MIN_LABELLED} or more labelled " + (
            f"answers keeps {priority.budget}{slow}."
        )
    if priority.first != "accuracy":  # the cheapest or fastest of the most accurate
        leader = min(within, key=lambda n: DEFAULT_PRIORITY.key(within[n]))
        within = {n: f for n, f in within.items() if n == leader or _overlap(within[leader], f)}
    ranked = sorted(within, key=lambda n: priority.key(within[n]))
    name, f = ranked[0], within[ranked[0]]
    shadowed = ", answered as a shadow" if f.get("shadow") else ""
    sentence = (
        f"Use {name}: {_why(priority, len(within))} ({_accuracy(f)}{shadowed}), with {_tail(f)}"
        f"{slow}."
    )
    if priority.first == "accuracy" and len(ranked) > 1 and _overlap(f, within[ranked[1]]):
        runner = ranked[1]
        sentence += (
            f" It is not distinguishable from {runner} ({_accuracy(within[runner])}, with "
            f"{_tail(within[runner])}) at this sample size: their intervals overlap; label "
            "more answers to tell them apart, or put cost or latency first."
        )
    if f.get("shadow"):
        sentence += " Promote it with a gated POST /switch."
    return name, sentence


def _why(priority: Priority, among: int) -> str:
    """Why the first of `among` candidates is chosen, in the priority's words."""
    budget = f" and {priority.budget}" if priority.budget else ""
    labelled = f"{MIN_LABELLED} or more labelled answers{budget}"
    if priority.first == "accuracy":
        if among == 1:
            return f"the only model with {labelled}"
        return f"the most accurate of {among} models with {labelled}"
    best = "the cheapest" if priority.first == "cost" else "the fastest (p95)"
    if among == 1:
        return f"the most accurate model with {labelled}, and so {best} of those as accurate"
    return (
        f"{best} of {among} models with {labelled} not distinguishable from the most accurate "
        "at this sample size"
    )


def _over_budget(slow: Mapping[str, Figures], priority: Priority) -> str:
    """The models left out for their latency, with their p95."""
    if not slow:
        return ""
    named = ", ".join(f"{n} (p95 {f['p95_ms']:,.0f} ms)" for n, f in sorted(slow.items()))
    return f"; left out for a p95 over {priority.p95_budget_ms:,.0f} ms: {named}"


def _overlap(first: Figures, second: Figures) -> bool:
    return bool(first["accuracy_interval"][0] <= second["accuracy_interval"][1])


def _too_few(candidates: Mapping[str, Figures]) -> str:
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
