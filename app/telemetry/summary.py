"""Per-model figures over benchmark-log rows: the summary rows, /benchmarks/summary, reports."""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from app.banking.intents import choice
from app.telemetry.recommend import DEFAULT_PRIORITY, Priority, recommend, wilson


class Sample(NamedTuple):
    model: str
    status: str
    latency_ms: float
    tokens_per_s: float
    backend: str = ""
    cost_usd: float = math.nan  # nan: not known (a row from before costs, echo's)
    correct: int = -1  # a labelled request: 1 when its intent was the label, else 0; -1 unlabelled
    version: str = ""  # the checkpoint's or adapter's hash, the upstream model's id
    handoff: int = 0  # 1: the answer was a hand-off to a person
    ttft_ms: float = math.nan  # time to its first token (nan: none came)
    machine_s: float = 0.0  # a local model's machine time it was billed, in `machine_unit`s
    machine_unit: str = ""  # CPU-s or GPU-s; "" for a cloud model (billed by its tokens)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Sample:
        label = row.get("label")
        return cls(
            str(row["model"]),
            str(row["status"]),
            float(row["latency_ms"]),
            float(row.get("tokens_per_s") or 0.0),
            str(row.get("backend") or ""),
            math.nan if row.get("cost_usd") is None else float(row["cost_usd"]),
            -1 if label is None else int(choice(row.get("intent"), row.get("handoff")) == label),
            str(row.get("version") or ""),
            int(row.get("handoff") is not None),
            math.nan if row.get("ttft_ms") is None else float(row["ttft_ms"]),
            float(row.get("machine_s") or 0.0),
            str(row.get("machine_unit") or ""),
        )


class SampleWindow:
    """The newest `size` samples, kept as columns of strings and floats: objects the garbage
    collector does not track, so a window that fills while the service runs adds nothing to
    its collection passes (100,000 tuples would)."""

    def __init__(self, size: int):
        self._models: deque[str] = deque(maxlen=size)
        self._statuses: deque[str] = deque(maxlen=size)
        self._latencies: deque[float] = deque(maxlen=size)
        self._rates: deque[float] = deque(maxlen=size)
        self._backends: deque[str] = deque(maxlen=size)
        self._costs: deque[float] = deque(maxlen=size)
        self._correct: deque[int] = deque(maxlen=size)
        self._versions: deque[str] = deque(maxlen=size)
        self._handoffs: deque[int] = deque(maxlen=size)
        self._ttfts: deque[float] = deque(maxlen=size)
        self._machine_s: deque[float] = deque(maxlen=size)
        self._machine_units: deque[str] = deque(maxlen=size)

    def append(self, sample: Sample) -> None:
        self._models.append(sample.model)
        self._statuses.append(sample.status)
        self._latencies.append(sample.latency_ms)
        self._rates.append(sample.tokens_per_s)
        self._backends.append(sample.backend)
        self._costs.append(sample.cost_usd)
        self._correct.append(sample.correct)
        self._versions.append(sample.version)
        self._handoffs.append(sample.handoff)
        self._ttfts.append(sample.ttft_ms)
        self._machine_s.append(sample.machine_s)
        self._machine_units.append(sample.machine_unit)

    def samples(self) -> list[Sample]:
        columns = (
            self._models,
            self._statuses,
            self._latencies,
            self._rates,
            self._backends,
            self._costs,
            self._correct,
            self._versions,
            self._handoffs,
            self._ttfts,
            self._machine_s,
            self._machine_units,
        )
        return [Sample(*values) for values in zip(*columns, strict=True)]


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# Who a failed request's error is: the model's (it failed, or ran out of time) counts against
# it; the caller's (a 4xx: a bad request, a key refused, a full queue) never reached it.
MODEL_ERRORS = frozenset({"upstream_error", "timeout"})
CALLER_ERRORS = frozenset({"bad_request", "rejected"})


def _figures(samples: list[Sample]) -> dict[str, Any]:
    ok = [s for s in samples if s.status == "ok"]
    latencies = [s.latency_ms for s in ok]
    # A safety stop judged the prompt and a cancelled request its caller: counted apart.
    errors = sum(s.status in MODEL_ERRORS for s in samples)
    callers = sum(s.status in CALLER_ERRORS for s in samples)
    asked = len(samples) - callers  # the requests that reached the model
    labelled = [s.correct for s in samples if s.correct >= 0]
    return {
        "count": len(samples),
        "p50_ms": _round(percentile(latencies, 50)),
        "p95_ms": _round(percentile(latencies, 95)),
        "p99_ms": _round(percentile(latencies, 99)),
        "mean_tokens_per_s": _round(sum(s.tokens_per_s for s in ok) / len(ok)) if ok else None,
        "error_rate": round(errors / asked, 4) if asked else 0.0,
        "caller_errors": callers,
        "refused": sum(s.status == "refused" for s in samples),
        "mean_cost_usd": round(sum(_known(s.cost_usd) for s in ok) / len(ok), 8) if ok else None,
        **_cost(samples, len(ok)),
        "labelled": len(labelled),
        "accuracy": round(sum(labelled) / len(labelled), 4) if labelled else None,
        "accuracy_interval": wilson(sum(labelled), len(labelled)) if labelled else None,
        "handoff_rate": round(sum(s.handoff for s in ok) / len(ok), 4) if ok else None,
        "p50_ttft_ms": _round(percentile([s.ttft_ms for s in ok if s.ttft_ms == s.ttft_ms], 50)),
    }


def _known(value: float) -> float:
    return 0.0 if math.isnan(value) else value


def _cost(samples: list[Sample], answers: int) -> dict[str, Any]:
    """What 1,000 answers cost: every request's cost (a failed one's machine time too) over
    the answers given; for a local model, the machine time they took too. None where no
    request's cost is known: unknown, never free."""
    priced = [s.cost_usd for s in samples if not math.isnan(s.cost_usd)]
    unit = next((s.machine_unit for s in samples if s.machine_unit), None)
    if not answers or not priced:
        return {"cost_per_1000_usd": None, "machine_per_1000": None, "machine_unit": unit}
    machine = sum(s.machine_s for s in samples) * 1000 / answers
    return {
        "cost_per_1000_usd": round(sum(priced) * 1000 / answers, 6),
        "machine_per_1000": round(machine, 2) if unit else None,
        "machine_unit": unit,
    }


def by_version(samples: Iterable[Sample]) -> dict[str, list[Sample]]:
    """The samples of each (model, version), under the model's name, or `name@version` where
    the name answered with more than one version (two checkpoints are two models to judge)."""
    groups: dict[tuple[str, str], list[Sample]] = {}
    for s in samples:
        groups.setdefault((s.model, s.version), []).append(s)
    versions = Counter(model for model, _ in groups)
    return {
        model if versions[model] == 1 else f"{model}@{version}": group
        for (model, version), group in sorted(groups.items())
    }


def _round(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 2)


def summarize(
    samples: Iterable[Sample],
    shadows: Mapping[str, Mapping[str, Any]] | None = None,
    priority: Priority = DEFAULT_PRIORITY,
) -> dict[str, Any]:
    """{"models": {key: figures}, "fastest_model", "recommended_model", "recommendation"};
    with `shadows` (app.telemetry.shadow_stats), a shadow's labelled figures count too."""
    by_model = by_version(samples)
    models = {key: {"version": g[-1].version, **_figures(g)} for key, g in by_model.items()}
    backends = {key: group[-1].backend for key, group in by_model.items()}
    # Only a model that mostly works is the fastest, or can be recommended; echo, with no
    # model behind it, measures the service's own overhead and is neither.
    usable = {n: f for n, f in models.items() if f["p50_ms"] is not None and f["error_rate"] < 0.5}
    models_only = [n for n in usable if backends[n] != "echo"]
    fastest = min(models_only, key=lambda n: usable[n]["p50_ms"]) if models_only else None
    recommended, sentence = recommend(usable, backends, shadows or {}, priority)
    return {
        "models": models,
        "fastest_model": fastest,
        "recommended_model": recommended,
        "recommendation": sentence,
    }
