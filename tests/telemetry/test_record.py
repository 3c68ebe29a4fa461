"""A request's record: the one writer of its metric samples, its row and its latency."""

from __future__ import annotations

from pathlib import Path
from unittest.mock import ANY

import pytest

from app.backends.machine_time import MachineMeters, MachinePrice
from app.backends.protocol import ModelInfo, Usage
from app.errors import QueueFull, UpstreamTimeout
from app.telemetry.benchlog import BenchmarkLog
from app.telemetry.logfiles import read_rows
from app.telemetry.metrics import Metrics
from app.telemetry.record import RecordSinks

ACTIVE = ModelInfo("custom", "custom", "v1")
CLOUD = ModelInfo("gemini", "gemini", "gemini-2.5-flash")
LOCAL = ModelInfo("custom", "custom", "v1", machine=MachinePrice("CPU-s", 2, 0.036))
GPU = ModelInfo("qlora", "qlora", "a1", machine=MachinePrice("GPU-s", 1, 1.8))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _ledger(tmp_path: Path, latencies: list[float]) -> tuple[RecordSinks, Metrics, BenchmarkLog]:
    metrics, log = Metrics(), BenchmarkLog(tmp_path / "log.jsonl", every=100)
    log.start()
    return RecordSinks(metrics, log, lambda: ACTIVE, latencies.append), metrics, log


def _value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_a_served_request_writes_its_row_and_samples_once(tmp_path: Path) -> None:
    latencies: list[float] = []
    ledger, metrics, log = _ledger(tmp_path, latencies)
    record = ledger.open(stream=True)
    record.serve_with(CLOUD)
    in_flight = _value(metrics, "bankllm_requests_in_flight", model="gemini", backend="gemini")
    record.mark_token()
    record.usage, record.intent = Usage(12, 5, 0.0001), "card_arrival"
    record.commit()
    record.commit()  # a second commit writes nothing
    log.close()
    rows = list(read_rows(log.path))
    assert in_flight == 1
    assert _value(metrics, "bankllm_requests_in_flight", model="gemini", backend="gemini") == 0
    assert rows == [
        {
            "ts": ANY,
            "type": "request",
            "request_id": record.request_id,
            "model": "gemini",
            "backend": "gemini",
            "version": "gemini-2.5-flash",
            "status": "ok",
            "error_type": None,
            "stream": True,
            "latency_ms": ANY,
            "ttft_ms": ANY,
            "tpot_ms": ANY,
            "prompt_tokens": 12,
            "completion_tokens": 5,
            "tokens_per_s": ANY,
            "intent": "card_arrival",
            "handoff": None,
            "confidence": None,
            "label": None,
            "cost_usd": 0.0001,
            "machine_s": None,  # a cloud model is billed by its tokens
            "machine_unit": None,
            "fallback_from": None,
            "tools": None,
            "tool_calls": [],
            "api": "generate",
            "user": None,
        }
    ]
    labels = {"model": "gemini", "backend": "gemini"}
    assert _value(metrics, "bankllm_requests_total", **labels, status="ok") == 1
    assert _value(metrics, "bankllm_completion_tokens_total", **labels) == 5
    assert _value(metrics, "bankllm_cost_usd_total", **labels) == 0.0001
    assert len(latencies) == 1  # a success teaches admission its latency


def test_a_refused_request_is_counted_against_the_active_model(tmp_path: Path) -> None:
    latencies: list[float] = []
    ledger, metrics, log = _ledger(tmp_path, latencies)
    record = ledger.open(stream=False)
    record.fail(QueueFull("full", 3))
    record.commit()
    log.close()
    [row] = read_rows(log.path)
    assert (row["model"], row["status"], row["error_type"]) == ("custom", "rejected", "queue_full")
    labels = {"model": "custom", "backend": "custom", "status": "rejected"}
    assert _value(metrics, "bankllm_requests_total", **labels) == 1
    assert latencies == []  # a refusal says nothing about how long answers take


def test_a_fallback_moves_the_request_and_counts_it(tmp_path: Path) -> None:
    ledger, metrics, log = _ledger(tmp_path, [])
    record = ledger.open(stream=False)
    record.serve_with(CLOUD)
    record.fell_back(CLOUD, UpstreamTimeout("slow"), ACTIVE)
    gauges = [
        _value(metrics, "bankllm_requests_in_flight", model=m.name, backend=m.backend)
        for m in (CLOUD, ACTIVE)
    ]
    record.commit()
    log.close()
    [row] = read_rows(log.path)
    assert gauges == [0, 1]
    assert (row["model"], row["fallback_from"]) == ("custom", "gemini")
    labels = {"model": "gemini", "fallback": "custom", "error_type": "upstream_timeout"}
    assert _value(metrics, "bankllm_fallbacks_total", **labels) == 1


def test_a_local_model_s_requests_are_billed_their_share_of_its_machine(tmp_path: Path) -> None:
    clock = Clock()
    metrics, log = Metrics(), BenchmarkLog(tmp_path / "log.jsonl", every=100)
    log.start()
    ledger = RecordSinks(metrics, log, lambda: LOCAL, lambda _: None, machines=MachineMeters(clock))
    first, second = ledger.open(stream=False), ledger.open(stream=False)
    first.serve_with(LOCAL)
    clock.now = 2.0
    second.serve_with(LOCAL)  # two decoded together from here: each billed half of each second
    clock.now = 4.0
    first.commit()
    clock.now = 5.0
    second.commit()
    log.close()
    rows = list(read_rows(log.path))
    # 2 cores: 2 + 2/2 s = 6 CPU-s, then 2/2 + 1 s = 4 CPU-s; at $0.036 a core-hour
    assert [(r["machine_s"], r["machine_unit"]) for r in rows] == [(6.0, "CPU-s"), (4.0, "CPU-s")]
    assert [r["cost_usd"] for r in rows] == pytest.approx([6e-05, 4e-05])
    labels = {"model": "custom", "backend": "custom"}
    assert _value(metrics, "bankllm_cost_usd_total", **labels) == pytest.approx(1e-04)


def test_a_fallback_pays_each_machine_at_its_price_and_stops_with_the_model(
    tmp_path: Path,
) -> None:
    clock = Clock()
    metrics, log = Metrics(), BenchmarkLog(tmp_path / "log.jsonl", every=100)
    log.start()
    ledger = RecordSinks(metrics, log, lambda: LOCAL, lambda _: None, machines=MachineMeters(clock))
    record = ledger.open(stream=True)
    record.serve_with(GPU)  # fails after 1 s
    clock.now = 1.0
    record.fell_back(GPU, UpstreamTimeout("slow"), LOCAL)
    clock.now = 3.0
    record.model_done(Usage(4, 2))  # the model's last piece: its machine is free from here
    clock.now = 60.0  # a slow client reads the answer meanwhile
    record.commit()
    log.close()
    (row,) = read_rows(log.path)
    # the answering model's time, in its unit; the cost of both machines at their prices
    assert (row["machine_s"], row["machine_unit"]) == (4.0, "CPU-s")
    assert row["cost_usd"] == pytest.approx(1 * 1.8 / 3600 + 4 * 0.036 / 3600)
