"""Per-model figures over benchmark-log rows: the summary rows, /benchmarks/summary, reports."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple


class Sample(NamedTuple):
    model: str
    status: str
    latency_ms: float
    tokens_per_s: float

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Sample:
        return cls(
            str(row["model"]),
            str(row["status"]),
            float(row["latency_ms"]),
            float(row.get("tokens_per_s") or 0.0),
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

    def append(self, sample: Sample) -> None:
        self._models.append(sample.model)
        self._statuses.append(sample.status)
        self._latencies.append(sample.latency_ms)
        self._rates.append(sample.tokens_per_s)

    def samples(self) -> list[Sample]:
        columns = (self._models, self._statuses, self._latencies, self._rates)
        return [Sample(*values) for values in zip(*columns, strict=True)]


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _figures(samples: list[Sample]) -> dict[str, Any]:
    ok = [s for s in samples if s.status == "ok"]
    latencies = [s.latency_ms for s in ok]
    errors = sum(s.status not in ("ok", "cancelled") for s in samples)
    return {
        "count": len(samples),
        "p50_ms": _round(percentile(latencies, 50)),
        "p95_ms": _round(percentile(latencies, 95)),
        "p99_ms": _round(percentile(latencies, 99)),
        "mean_tokens_per_s": _round(sum(s.tokens_per_s for s in ok) / len(ok)) if ok else None,
        "error_rate": round(errors / len(samples), 4),
    }


def _round(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 2)


def summarize(samples: Iterable[Sample]) -> dict[str, Any]:
    """{"models": {name: figures}, "fastest_model", "recommendation"}."""
    by_model: dict[str, list[Sample]] = {}
    for s in samples:
        by_model.setdefault(s.model, []).append(s)
    models = {name: _figures(group) for name, group in sorted(by_model.items())}
    fastest, sentence = _recommend(models)
    return {"models": models, "fastest_model": fastest, "recommendation": sentence}


def _recommend(models: dict[str, dict[str, Any]]) -> tuple[str | None, str]:
    # Only a model that mostly works can be recommended for speed.
    usable = {n: f for n, f in models.items() if f["p50_ms"] is not None and f["error_rate"] < 0.5}
    if not usable:
        return None, "No model has served enough successful requests to recommend one yet."
    name = min(usable, key=lambda n: usable[n]["p50_ms"])
    f = usable[name]
    if len(usable) > 1:
        versus = f"the fastest of {len(usable)} models measured"
    elif len(models) > 1:
        versus = "the only model measured with under 50% errors"
    else:
        versus = "the only model measured"
    return name, (
        f"Use {name}: {versus}, with a median latency of {f['p50_ms']:.0f} ms "
        f"(p95 {f['p95_ms']:.0f} ms) and {f['error_rate']:.1%} errors over {f['count']} requests."
    )
