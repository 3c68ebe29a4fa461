from __future__ import annotations

import math

import pytest

from app.telemetry.recommend import Priority
from app.telemetry.shadow_stats import shadow_figures
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
    samples = [Sample("custom", "ok", ms, 50.0, "custom") for ms in (100.0, 200.0, 300.0)]
    samples += [Sample("custom", "timeout", 60000.0, 0.0, "custom")]
    samples += [Sample("custom", "cancelled", 5.0, 0, "custom")]
    samples += [
        Sample("echo", "ok", 1.0, 1000.0, "echo"),
        Sample("echo", "ok", 3.0, 3000.0, "echo"),
    ]
    assert summarize(samples) == {
        "models": {
            "custom": {
                "version": "",
                "count": 5,
                "p50_ms": 200.0,
                "p95_ms": 290.0,
                "p99_ms": 298.0,
                "mean_tokens_per_s": 50.0,
                "error_rate": 0.2,
                "caller_errors": 0,
                "refused": 0,
                "mean_cost_usd": 0.0,
                "cost_per_1000_usd": None,  # no row priced: unknown, never free
                "machine_per_1000": None,  # no machine time in these rows
                "machine_unit": None,
                "labelled": 0,
                "accuracy": None,
                "accuracy_interval": None,
                "handoff_rate": 0.0,
                "p50_ttft_ms": None,
            },
            "echo": {
                "version": "",
                "count": 2,
                "p50_ms": 2.0,
                "p95_ms": 2.9,
                "p99_ms": 2.98,
                "mean_tokens_per_s": 2000.0,
                "error_rate": 0.0,
                "caller_errors": 0,
                "refused": 0,
                "mean_cost_usd": 0.0,
                "cost_per_1000_usd": None,  # no row priced: unknown, never free
                "machine_per_1000": None,  # no machine time in these rows
                "machine_unit": None,
                "labelled": 0,
                "accuracy": None,
                "accuracy_interval": None,
                "handoff_rate": 0.0,
                "p50_ttft_ms": None,
            },
        },
        "fastest_model": "custom",  # echo measures our overhead: never fastest
        "recommended_model": None,  # nothing labelled: accuracy cannot decide; echo, never
        "recommendation": "No recommendation yet: intent accuracy decides, and it needs 30 "
        "labelled answers a model; none is labelled yet (`bankllm eval --url` labels what it "
        "asks). Fastest meanwhile: custom, with 20.0% errors over 5 requests, a median latency "
        "of 200 ms (p95 290 ms) and no cost known.",
    }


def labelled(
    model: str, backend: str, ms: float, right: int, n: int, cost: float = math.nan
) -> list[Sample]:
    """`n` labelled answers of `model`, `right` of them right (cost nan: not known)."""
    return [Sample(model, "ok", ms, 10.0, backend, cost, int(i < right)) for i in range(n)]


def test_accuracy_on_enough_labelled_answers_decides_before_speed_and_cost() -> None:
    samples = labelled("custom", "custom", 50.0, 70, 100)
    samples += labelled("gemini", "gemini", 400.0, 90, 100, 0.0002)
    samples += [Sample("echo", "ok", 1.0, 9000.0, "echo", 0.0, 1)] * 100
    summary = summarize(samples)
    gemini = summary["models"]["gemini"]
    assert (gemini["accuracy"], gemini["accuracy_interval"]) == (0.9, [0.8256, 0.9448])
    assert (summary["fastest_model"], summary["recommended_model"]) == ("custom", "gemini")
    assert summary["recommendation"] == (
        "Use gemini: the most accurate of 2 models with 30 or more labelled answers and a p95 "
        "within 3,000 ms (90.0% intent accuracy (95% interval 82.6% to 94.5%) on 100 labelled "
        "answers), with 0.0% errors over 100 requests, a median latency of 400 ms (p95 400 "
        "ms) and $0.2000 per 1,000 answers."
    )


def test_two_models_whose_intervals_overlap_are_named_as_not_distinguishable() -> None:
    samples = labelled("a", "custom", 50.0, 32, 40) + labelled("b", "qlora", 80.0, 30, 40)
    summary = summarize(samples)
    assert summary["recommended_model"] == "a"
    assert "It is not distinguishable from b (75.0% intent accuracy" in summary["recommendation"]
    assert summary["recommendation"].endswith(
        "on 40 labelled answers, with 0.0% errors over 40 requests, a median latency of 80 ms "
        "(p95 80 ms) and no cost known) at this sample size: their intervals overlap; label more "
        "answers to tell them apart, or put cost or latency first."
    )


def test_nothing_is_recommended_from_fewer_labelled_answers_than_the_minimum() -> None:
    samples = labelled("custom", "custom", 50.0, 9, 10) + labelled("gemini", "gemini", 9.0, 2, 29)
    summary = summarize(samples)
    assert summary["recommended_model"] is None
    assert summary["recommendation"].startswith(
        "No recommendation yet: intent accuracy decides, and it needs 30 labelled answers a "
        "model; the most is 29, for gemini. Fastest meanwhile: gemini,"
    )


def test_a_sample_knows_whether_its_row_was_right() -> None:
    row = {"model": "m", "status": "ok", "latency_ms": 1.0, "backend": "custom"}
    assert Sample.from_row(row).correct == -1
    assert Sample.from_row({**row, "intent": "a", "label": "a"}).correct == 1
    assert Sample.from_row({**row, "intent": None, "label": "a"}).correct == 0


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


def test_a_shadow_more_accurate_on_labelled_requests_is_recommended_for_promotion() -> None:
    served = labelled("custom", "custom", 100.0, 12, 40)
    shadow = {
        "mirrored": 40,
        "p50_ms": 150.0,
        "p95_ms": 180.0,
        "error_rate": 0.0,
        "refused": 0,
        "labelled": 40,
        "shadow_accuracy": 0.9,
    }
    summary = summarize(served, {"custom-v2": shadow})
    assert summary["recommended_model"] == "custom-v2"
    assert summary["recommendation"] == (
        "Use custom-v2: the most accurate of 2 models with 30 or more labelled answers and a "
        "p95 within 3,000 ms (90.0% intent accuracy (95% interval 77.0% to 96.0%) on 40 "
        "labelled answers, answered as a shadow), with 0.0% errors over 40 requests, a median "
        "latency of 150 ms (p95 180 ms) and no cost known. Promote it with a gated POST /switch."
    )
    assert summarize(served)["recommended_model"] == "custom"


def test_a_safety_stop_is_counted_apart_from_the_model_s_errors() -> None:
    samples = [
        Sample("gemini", "ok", 100.0, 10.0),
        Sample("gemini", "refused", 50.0, 0.0),
        Sample("gemini", "upstream_error", 50.0, 0.0),
        Sample("gemini", "ok", 120.0, 10.0),
    ]
    figures = summarize(samples)["models"]["gemini"]
    assert (figures["error_rate"], figures["refused"]) == (0.25, 1)


def test_a_hand_off_is_scored_as_the_out_of_scope_choice_it_is() -> None:
    row = {"model": "m", "status": "ok", "latency_ms": 1.0, "intent": None}
    away = {**row, "handoff": "out_of_scope", "label": "out_of_scope"}
    doubted = {**row, "handoff": "low_confidence", "label": "card_arrival"}
    guessed = {**row, "handoff": None, "label": "out_of_scope"}
    assert [Sample.from_row(r).correct for r in (away, doubted, guessed)] == [1, 0, 0]
    pair = {
        "label": "out_of_scope",
        "intent": None,
        "shadow_intent": None,
        "handoff": "out_of_scope",
        "shadow_handoff": "low_confidence",
        "agree": True,
        "status": "ok",
        "shadow_status": "ok",
        "latency_ms": 1.0,
        "shadow_latency_ms": 1.0,
    }
    figures = shadow_figures([pair])
    assert (figures["live_accuracy"], figures["shadow_accuracy"]) == (1.0, 1.0)


def test_the_caller_s_mistakes_never_count_against_the_model() -> None:
    samples = [Sample("custom", "ok", 10.0, 50.0, "custom")] * 6
    samples += [Sample("custom", "bad_request", 1.0, 0.0, "custom")] * 3
    samples += [Sample("custom", "rejected", 1.0, 0.0, "custom")]  # a key refused, a full queue
    samples += [Sample("custom", "upstream_error", 1.0, 0.0, "custom")] * 2
    figures = summarize(samples)["models"]["custom"]
    assert (figures["error_rate"], figures["caller_errors"]) == (0.25, 4)  # 2 of the 8 it saw


def test_two_checkpoints_of_one_name_are_two_models_never_blended() -> None:
    def answered(version: str, right: int) -> list[Sample]:
        return [
            Sample("custom", "ok", 10.0, 50.0, "custom", 0.0, int(i < right), version)
            for i in range(40)
        ]

    summary = summarize(answered("a1", 8) + answered("b2", 28) + [Sample("echo", "ok", 1.0, 9.0)])
    models = summary["models"]
    assert set(models) == {"custom@a1", "custom@b2", "echo"}  # echo: one version, its name
    assert (models["custom@a1"]["accuracy"], models["custom@b2"]["accuracy"]) == (0.2, 0.7)
    assert models["custom@b2"]["version"] == "b2"
    assert summary["recommended_model"] == "custom@b2"
    assert summary["recommendation"].startswith("Use custom@b2: the most accurate of 2 models")
    assert "not distinguishable" not in summary["recommendation"]


def test_a_model_over_the_latency_budget_is_left_out_and_named() -> None:
    samples = labelled("qlora", "qlora", 4200.0, 95, 100) + labelled(
        "gemini", "gemini", 600.0, 85, 100
    )
    summary = summarize(samples)
    assert summary["recommended_model"] == "gemini"
    assert summary["recommendation"].endswith(
        "; left out for a p95 over 3,000 ms: qlora (p95 4,200 ms)."
    )
    patient = summarize(samples, priority=Priority(p95_budget_ms=5000))
    assert patient["recommended_model"] == "qlora"


def test_no_model_within_the_budget_is_no_recommendation() -> None:
    summary = summarize(labelled("qlora", "qlora", 4200.0, 95, 100))
    assert summary["recommended_model"] is None
    assert summary["recommendation"] == (
        "No recommendation: no model with 30 or more labelled answers keeps a p95 within 3,000 "
        "ms; left out for a p95 over 3,000 ms: qlora (p95 4,200 ms)."
    )


def test_cost_first_is_the_cheapest_of_the_models_as_accurate_as_the_best() -> None:
    samples = labelled("gemini", "gemini", 600.0, 36, 40, 0.0002)  # the most accurate
    samples += labelled("custom", "custom", 40.0, 34, 40, 0.00001)  # within its interval
    samples += labelled("tiny", "custom", 20.0, 10, 40, 0.000001)  # cheapest, but far behind
    cheapest = summarize(samples, priority=Priority(first="cost"))
    assert cheapest["recommended_model"] == "custom"
    assert cheapest["recommendation"].startswith(
        "Use custom: the cheapest of 2 models with 30 or more labelled answers and a p95 within "
        "3,000 ms not distinguishable from the most accurate at this sample size (85.0% intent"
    )
    fastest = summarize(samples, priority=Priority(first="latency"))
    assert fastest["recommended_model"] == "custom"
    assert summarize(samples)["recommended_model"] == "gemini"


def test_cost_first_never_takes_an_unknown_cost_for_free() -> None:
    served = labelled("custom", "custom", 40.0, 34, 40, 0.00001)
    shadow = {
        "mirrored": 40,
        "p50_ms": 30.0,
        "p95_ms": 40.0,
        "error_rate": 0.0,
        "refused": 0,
        "labelled": 40,
        "shadow_accuracy": 0.875,  # as accurate at this sample size, its cost not in its rows
    }
    summary = summarize(served, {"custom-v2": shadow}, Priority(first="cost"))
    assert summary["recommended_model"] == "custom"
    assert "$0.0100 per 1,000 answers" in summary["recommendation"]
