from __future__ import annotations

import pytest

from app.evaluation.loadtest import Outcome, figures


def _streamed(start: float, deltas: list[float], end: float, tokens: int) -> Outcome:
    return Outcome(
        start=start,
        end=end,
        first_token=deltas[0],
        token_times=deltas,
        prompt_tokens=10,
        output_tokens=tokens,
    )


def test_ttft_tpot_itl_and_e2e_from_known_event_times() -> None:
    o = _streamed(1.0, [1.1, 1.15, 1.25], 1.3, tokens=5)
    assert o.ttft_ms == pytest.approx(100.0)
    assert o.e2el_ms == pytest.approx(300.0)
    assert o.tpot_ms == pytest.approx(50.0)  # 200 ms after the first token over 4 tokens
    assert o.itl_ms == pytest.approx([50.0, 100.0])


def test_one_token_has_no_tpot() -> None:
    assert _streamed(0.0, [0.5], 0.5, tokens=1).tpot_ms is None


def test_run_figures_named_like_vllm_bench_serve() -> None:
    outcomes = [
        _streamed(0.0, [0.1, 0.2], 0.3, tokens=3),
        _streamed(0.0, [0.3, 0.4], 0.9, tokens=4),
        Outcome(start=0.0, end=0.05, error="queue_full"),
    ]
    result = figures(outcomes, duration_s=2.0, slo_ttft_ms=200, slo_e2e_ms=1000)
    assert result == {
        "completed": 2,
        "failed": 1,
        "errors": {"queue_full": 1},
        "duration": 2.0,
        "total_input_tokens": 20,
        "total_output_tokens": 7,
        "request_throughput": 1.0,
        "output_throughput": 3.5,
        "total_token_throughput": 13.5,
        "request_goodput": 0.5,
        "mean_ttft_ms": 200.0,
        "median_ttft_ms": 200.0,
        "p90_ttft_ms": 280.0,
        "p99_ttft_ms": 298.0,
        "mean_tpot_ms": 150.0,
        "median_tpot_ms": 150.0,
        "p90_tpot_ms": 190.0,
        "p99_tpot_ms": 199.0,
        "mean_itl_ms": 100.0,
        "median_itl_ms": 100.0,
        "p90_itl_ms": 100.0,
        "p99_itl_ms": 100.0,
        "mean_e2el_ms": 600.0,
        "median_e2el_ms": 600.0,
        "p90_e2el_ms": 840.0,
        "p99_e2el_ms": 894.0,
    }


def test_no_slo_no_goodput() -> None:
    assert "request_goodput" not in figures([_streamed(0.0, [0.1], 0.2, 2)], 1.0)
