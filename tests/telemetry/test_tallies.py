"""The per-model series: plain numbers on the hot path, the families prometheus_client's own
metrics would expose at a scrape."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from app.backends.protocol import Usage
from app.telemetry.metrics import Metrics
from app.telemetry.tallies import LATENCY_BUCKETS, TPOT_BUCKETS, Buckets

MODEL = ("model", "backend")
# (status, latency, ttft, tpot, usage): on bucket bounds, between them, past the last one
REQUESTS: list[tuple[str, float, float | None, float | None, Usage]] = [
    ("ok", 0.005, 0.001, 0.0005, Usage(8, 15)),
    ("ok", 0.0123, 0.004, None, Usage(3, 1, 0.002)),
    ("timeout", 130.0, None, None, Usage(0, 0)),
    ("ok", 120.0, 60.0, 2.5, Usage(4, 2, 0.001)),
]


def _samples(registry: CollectorRegistry) -> dict[str, list[tuple[str, str, float | str]]]:
    """Each family's samples, in order; a `_created` time as present, not its value (the two
    registries make their series at different times)."""
    text = generate_latest(registry).decode()
    return {
        f.name: sorted(
            (s.name, repr(sorted(s.labels.items())), "a time" if "_created" in s.name else s.value)
            for s in f.samples
        )
        for f in text_string_to_metric_families(text)
    }


def _prometheus_client_own() -> CollectorRegistry:
    """The same requests through prometheus_client's children, as the service once wrote them."""
    r = CollectorRegistry()
    latency = Histogram(
        "bankllm_request_latency_seconds",
        "Time from arrival to the last byte of a request.",
        MODEL,
        buckets=LATENCY_BUCKETS,
        registry=r,
    )
    ttft = Histogram(
        "bankllm_time_to_first_token_seconds",
        "Time from arrival to the first output token.",
        MODEL,
        buckets=LATENCY_BUCKETS,
        registry=r,
    )
    tpot = Histogram(
        "bankllm_time_per_output_token_seconds",
        "Mean time per output token after the first.",
        MODEL,
        buckets=TPOT_BUCKETS,
        registry=r,
    )
    requests = Counter(
        "bankllm_requests_total", "Generate requests by outcome.", (*MODEL, "status"), registry=r
    )
    prompt = Counter("bankllm_prompt_tokens_total", "Prompt tokens read.", MODEL, registry=r)
    completion = Counter("bankllm_completion_tokens_total", "Tokens generated.", MODEL, registry=r)
    cost = Counter(
        "bankllm_cost_usd_total", "Provider cost estimate, in US dollars.", MODEL, registry=r
    )
    in_flight = Gauge("bankllm_requests_in_flight", "Requests generating now.", MODEL, registry=r)
    labels = ("custom", "custom")
    children: list[Any] = [m.labels(*labels) for m in (latency, ttft, tpot, prompt, completion)]
    cost.labels(*labels)
    in_flight.labels(*labels).inc()
    for status, latency_s, ttft_s, tpot_s, usage in REQUESTS:
        requests.labels(*labels, status).inc()
        children[0].observe(latency_s)
        if ttft_s is not None:
            children[1].observe(ttft_s)
        if tpot_s is not None:
            children[2].observe(tpot_s)
        children[3].inc(usage.prompt_tokens)
        children[4].inc(usage.completion_tokens)
        if usage.cost_usd:
            cost.labels(*labels).inc(usage.cost_usd)
    return r


def test_the_families_are_those_of_prometheus_clients_own_metrics() -> None:
    metrics = Metrics()
    series = metrics.series("custom", "custom")
    series.in_flight += 1  # one request still generating
    for request in REQUESTS:
        series.count(*request)
    ours = _samples(metrics.registry)
    theirs = _samples(_prometheus_client_own())
    assert {name: ours[name] for name in theirs} == theirs


def test_a_scrape_before_any_request_lists_the_families_without_samples() -> None:
    families = _samples(Metrics().registry)
    assert families["bankllm_request_latency_seconds"] == []
    assert families["bankllm_requests"] == []
    assert families["bankllm_requests_in_flight"] == []


def test_an_observation_goes_in_the_first_bucket_at_or_above_it() -> None:
    buckets = Buckets((0.1, 1.0))
    for value in (0.0, 0.1, 0.5, 1.0, 7.0):
        buckets.observe(value)
    assert buckets.cumulative() == [("0.1", 2.0), ("1.0", 4.0), ("+Inf", 5.0)]
    assert buckets.sum == 8.6
