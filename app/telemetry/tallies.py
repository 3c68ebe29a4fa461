"""The per-model series every request writes, kept as plain numbers and exposed by a collector.

Through prometheus_client's children a request wrote eleven samples (three histograms, its
status, its tokens, the in-flight gauge up and down), each one behind a lock of its own: ~4 µs
of every request, a twentieth of the echo model's whole request. Requests are recorded on the
event loop's one thread, so here a sample is an addition; the collector turns the numbers into
the very families prometheus_client would (names, help, labels, buckets, `_created`) when
/metrics is scraped: on that same thread, or on the exporter's own thread where a Ray replica
serves its metrics (`start_http_server`). So the collector iterates copies of the dicts a
request can add to (a C-level copy, atomic under the interpreter lock), never the dicts."""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from app.backends.protocol import Usage

# 5 ms to 120 s: a CPU model and a cloud API on one scale.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# 0.5 ms to 2 s per output token.
TPOT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
MODEL_LABELS = ("model", "backend")


class Buckets:
    """One labelled histogram: how many observations fell in each bucket, and their sum."""

    __slots__ = ("_bounds", "_counts", "_les", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = (*bounds, math.inf)
        self._les: list[str] = [floatToGoString(b) for b in self._bounds]  # type: ignore[no-untyped-call]
        self._counts = [0] * len(self._bounds)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Into the first bucket whose bound is at least `value`, as prometheus_client's."""
        self._counts[bisect_left(self._bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        """(le, observations at or below it), +Inf last: a histogram family's buckets."""
        total = 0
        buckets = []
        for le, count in zip(self._les, self._counts, strict=True):
            total += count
            buckets.append((le, float(total)))
        return buckets


class ModelTally:
    """One model's series, made when a request first reaches (or is counted against) it."""

    __slots__ = (
        "completion_tokens",
        "cost_usd",
        "created",
        "in_flight",
        "latency",
        "prompt_tokens",
        "requests",
        "requests_created",
        "tpot",
        "ttft",
    )

    def __init__(self) -> None:
        self.created = time.time()
        self.latency = Buckets(LATENCY_BUCKETS)
        self.ttft = Buckets(LATENCY_BUCKETS)
        self.tpot = Buckets(TPOT_BUCKETS)
        self.requests: dict[str, int] = {}  # by status, as they occur
        self.requests_created: dict[str, float] = {}
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost_usd = 0.0
        self.in_flight = 0

    def count(
        self,
        status: str,
        latency_s: float,
        ttft_s: float | None,
        tpot_s: float | None,
        usage: Usage,
    ) -> None:
        """One finished request: its outcome, its times and its tokens."""
        done = self.requests.get(status)
        if done is None:
            self.requests_created[status] = time.time()
            done = 0
        self.requests[status] = done + 1
        self.latency.observe(latency_s)
        if ttft_s is not None:
            self.ttft.observe(ttft_s)
        if tpot_s is not None:
            self.tpot.observe(tpot_s)
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens
        if usage.cost_usd:
            self.cost_usd += usage.cost_usd


class PerModel(Collector):
    """The families of the per-model series, for a registry (registered once, read each scrape)."""

    def __init__(self, tallies: dict[tuple[str, str], ModelTally]) -> None:
        self._tallies = tallies

    def describe(self) -> Iterable[Metric]:
        return self._families({})

    def collect(self) -> Iterable[Metric]:
        return self._families(dict(self._tallies))

    def _families(self, tallies: dict[tuple[str, str], ModelTally]) -> Iterator[Metric]:
        for name, help_text, pick in _HISTOGRAMS:
            histogram = HistogramMetricFamily(name, help_text, labels=MODEL_LABELS)
            for labels, tally in tallies.items():
                buckets: Buckets = getattr(tally, pick)
                histogram.add_metric(labels, buckets.cumulative(), buckets.sum)
                histogram.add_sample(f"{name}_created", _named(labels), tally.created)
            yield histogram
        name, help_text = _REQUESTS
        requests = CounterMetricFamily(name, help_text, labels=(*MODEL_LABELS, "status"))
        for labels, tally in tallies.items():
            for status, done in tuple(tally.requests.items()):
                requests.add_metric((*labels, status), done, tally.requests_created[status])
        yield requests
        for name, help_text, pick in _COUNTERS:
            counter = CounterMetricFamily(name, help_text, labels=MODEL_LABELS)
            for labels, tally in tallies.items():
                counter.add_metric(labels, getattr(tally, pick), tally.created)
            yield counter
        name, help_text = _IN_FLIGHT
        in_flight = GaugeMetricFamily(name, help_text, labels=MODEL_LABELS)
        for labels, tally in tallies.items():
            in_flight.add_metric(labels, tally.in_flight)
        yield in_flight


_HISTOGRAMS = (  # (name, help, the tally's attribute)
    (
        "bankllm_request_latency_seconds",
        "Time from arrival to the last byte of a request.",
        "latency",
    ),
    ("bankllm_time_to_first_token_seconds", "Time from arrival to the first output token.", "ttft"),
    (
        "bankllm_time_per_output_token_seconds",
        "Mean time per output token after the first.",
        "tpot",
    ),
)
_REQUESTS = ("bankllm_requests_total", "Generate requests by outcome.")
_COUNTERS = (
    ("bankllm_prompt_tokens_total", "Prompt tokens read.", "prompt_tokens"),
    ("bankllm_completion_tokens_total", "Tokens generated.", "completion_tokens"),
    ("bankllm_cost_usd_total", "Provider cost estimate, in US dollars.", "cost_usd"),
)
_IN_FLIGHT = ("bankllm_requests_in_flight", "Requests generating now.")


def _named(labels: tuple[str, str]) -> dict[str, str]:
    return dict(zip(MODEL_LABELS, labels, strict=True))
