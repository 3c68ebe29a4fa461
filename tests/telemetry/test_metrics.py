"""The per-model metrics: what finished and running requests write, as a scrape reads it."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from app.backends.protocol import Usage
from app.telemetry.metrics import Metrics

CUSTOM = {"model": "custom", "backend": "custom"}


def _scraped(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_finished_requests_are_counted_by_model_and_status_with_their_times_and_tokens() -> None:
    metrics = Metrics()
    series = metrics.series("custom", "custom")
    series.count("ok", (0.005, 0.001, 0.0005), Usage(8, 15), None)
    series.count("ok", (0.3, 0.2, None), Usage(3, 1, 0.002), 0.002)
    series.count("timeout", (130.0, None, None), Usage(0, 0), None)
    scraped = _scraped(metrics.registry)
    labels = frozenset(CUSTOM.items())
    assert scraped[("bankllm_requests_total", labels | {("status", "ok")})] == 2
    assert scraped[("bankllm_requests_total", labels | {("status", "timeout")})] == 1
    assert scraped[("bankllm_request_latency_seconds_count", labels)] == 3
    assert scraped[("bankllm_request_latency_seconds_bucket", labels | {("le", "0.005")})] == 1
    assert scraped[("bankllm_request_latency_seconds_bucket", labels | {("le", "120.0")})] == 2
    assert scraped[("bankllm_time_to_first_token_seconds_count", labels)] == 2
    assert scraped[("bankllm_time_per_output_token_seconds_count", labels)] == 1
    assert scraped[("bankllm_prompt_tokens_total", labels)] == 11
    assert scraped[("bankllm_completion_tokens_total", labels)] == 16
    assert scraped[("bankllm_cost_usd_total", labels)] == 0.002


def test_requests_in_flight_are_a_gauge_per_model() -> None:
    metrics = Metrics()
    metrics.series("custom", "custom").in_flight.inc()
    metrics.series("gemini", "gemini").in_flight.inc()
    metrics.series("gemini", "gemini").in_flight.dec()
    scraped = _scraped(metrics.registry)
    assert scraped[("bankllm_requests_in_flight", frozenset(CUSTOM.items()))] == 1
    gemini = frozenset({"model": "gemini", "backend": "gemini"}.items())
    assert scraped[("bankllm_requests_in_flight", gemini)] == 0


def test_a_scrape_before_any_request_lists_the_families_without_samples() -> None:
    text = generate_latest(Metrics().registry).decode()
    families = {f.name: f.samples for f in text_string_to_metric_families(text)}
    for name in (
        "bankllm_request_latency_seconds",
        "bankllm_requests",
        "bankllm_requests_in_flight",
    ):
        assert families[name] == []
