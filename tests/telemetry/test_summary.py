from __future__ import annotations

import math

import pytest

from app.telemetry.summary import Sample, percentile, summarize


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([5.0], 99, 5.0),
        ([1.0, 2.0, 3.0, 4.0, 5.0], 95, 4.8),
        ([10.0, 0.0], 0, 0.0),
        ([10.0, 0.0], 100, 10.0),
    ],
)
def test_percentile_interpolates_between_ranks(
    values: list[float], q: float, expected: float
) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_of_nothing_is_nan() -> None:
    assert math.isnan(percentile([], 50))


def test_summary_per_model_and_recommendation() -> None:
    samples = [Sample("custom", "ok", ms, 50.0) for ms in (100.0, 200.0, 300.0)]
    samples += [Sample("custom", "timeout", 60000.0, 0.0), Sample("custom", "cancelled", 5.0, 0)]
    samples += [Sample("echo", "ok", 1.0, 1000.0), Sample("echo", "ok", 3.0, 3000.0)]
    assert summarize(samples) == {
        "models": {
            "custom": {
                "count": 5,
                "p50_ms": 200.0,
                "p95_ms": 290.0,
                "p99_ms": 298.0,
                "mean_tokens_per_s": 50.0,
                "error_rate": 0.2,
            },
            "echo": {
                "count": 2,
                "p50_ms": 2.0,
                "p95_ms": 2.9,
                "p99_ms": 2.98,
                "mean_tokens_per_s": 2000.0,
                "error_rate": 0.0,
            },
        },
        "fastest_model": "echo",
        "recommendation": "Use echo: the fastest of 2 models measured, with a median latency "
        "of 2 ms (p95 3 ms) and 0.0% errors over 2 requests.",
    }


def test_a_model_failing_most_requests_is_not_recommended() -> None:
    samples = [Sample("fast", "ok", 1.0, 10.0)] + [Sample("fast", "upstream_error", 1.0, 0)] * 2
    samples.append(Sample("slow", "ok", 500.0, 10.0))
    summary = summarize(samples)
    assert summary["fastest_model"] == "slow"
    assert summary["models"]["fast"]["error_rate"] == pytest.approx(0.6667)


def test_nothing_to_recommend_without_successes() -> None:
    assert summarize([Sample("x", "timeout", 1.0, 0)])["recommendation"] == (
        "No model has served enough successful requests to recommend one yet."
    )
