"""Prometheus metrics, in a registry of their own per app (tests build many apps)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# 5 ms to 120 s: a CPU model and a cloud API on one scale.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# 0.5 ms to 2 s per output token.
TPOT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
_MODEL = ("model", "backend")


@dataclass(frozen=True)
class ModelSeries:
    """One model's labelled children, looked up once: `labels()` on every request costs."""

    request_latency: Any
    ttft: Any
    tpot: Any
    prompt_tokens: Any
    completion_tokens: Any
    cost: Any
    in_flight: Any
    requests: dict[str, Any] = field(default_factory=dict)  # by status, filled as they occur


class Metrics:
    def __init__(self) -> None:
        self._series: dict[tuple[str, str], ModelSeries] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.request_latency = Histogram(
            "bankllm_request_latency_seconds",
            "Time from arrival to the last byte of a request.",
            _MODEL,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "bankllm_time_to_first_token_seconds",
            "Time from arrival to the first output token.",
            _MODEL,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tpot = Histogram(
            "bankllm_time_per_output_token_seconds",
            "Mean time per output token after the first.",
            _MODEL,
            buckets=TPOT_BUCKETS,
            registry=r,
        )
        self.switch_latency = Histogram(
            "bankllm_model_switch_seconds",
            "Time to load and warm up the model switched to.",
            ("from", "to"),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "bankllm_requests_total",
            "Generate requests by outcome.",
            (*_MODEL, "status"),
            registry=r,
        )
        self.prompt_tokens = Counter(
            "bankllm_prompt_tokens_total", "Prompt tokens read.", _MODEL, registry=r
        )
        self.completion_tokens = Counter(
            "bankllm_completion_tokens_total", "Tokens generated.", _MODEL, registry=r
        )
        self.load_attempts = Counter(
            "bankllm_model_load_attempts_total",
            "Attempts to load ACTIVE_MODEL at start (retried in the background), by result.",
            ("model", "result"),
            registry=r,
        )
        self.switches = Counter(
            "bankllm_model_switches_total", "Model switches by result.", ("result",), registry=r
        )
        self.fallbacks = Counter(
            "bankllm_fallbacks_total",
            "Requests a remote model failed before its first token, answered by FALLBACK_MODEL.",
            ("model", "fallback", "error_type"),
            registry=r,
        )
        self.pii_redactions = Counter(
            "bankllm_pii_redactions_total",
            "Customer numbers found in prompts to remote models (action: redacted|blocked).",
            ("kind", "action"),
            registry=r,
        )
        self.cost = Counter(
            "bankllm_cost_usd_total", "Provider cost estimate, in US dollars.", _MODEL, registry=r
        )
        self.log_write_errors = Counter(
            "bankllm_log_write_errors_total",
            "Benchmark-log rows dropped because the file could not be written (disk full...).",
            registry=r,
        )
        self.shadow_requests = Counter(
            "bankllm_shadow_requests_total",
            "Mirrored requests the shadow model answered, by its outcome.",
            ("shadow", "status"),
            registry=r,
        )
        self.shadow_agreement = Counter(
            "bankllm_shadow_agreement_total",
            "Mirrored requests both models answered, by whether their intents agree.",
            ("shadow", "agree"),
            registry=r,
        )
        self.shadow_dropped = Counter(
            "bankllm_shadow_dropped_total",
            "Sampled requests not mirrored (reason: queue_full|cost_cap|replaced|stopped).",
            ("shadow", "reason"),
            registry=r,
        )
        self.shadow_latency = Histogram(
            "bankllm_shadow_latency_seconds",
            "Time the shadow model took to answer a mirrored request.",
            ("shadow",),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "bankllm_requests_in_flight", "Requests generating now.", _MODEL, registry=r
        )
        self.queue_depth = Gauge(
            "bankllm_queue_depth", "Requests waiting for a generation slot.", registry=r
        )
        self.active_model = Gauge(
            "bankllm_active_model_info",
            "1 for the model that serves now, 0 for earlier ones.",
            ("model", "backend", "version"),
            registry=r,
        )

    def series(self, model: str, backend: str) -> ModelSeries:
        """The model's children of the per-model metrics (created on first use)."""
        found = self._series.get((model, backend))
        if found is None:
            labels = (model, backend)
            found = self._series[labels] = ModelSeries(
                self.request_latency.labels(*labels),
                self.ttft.labels(*labels),
                self.tpot.labels(*labels),
                self.prompt_tokens.labels(*labels),
                self.completion_tokens.labels(*labels),
                self.cost.labels(*labels),
                self.in_flight.labels(*labels),
            )
        return found

    def requests_of(self, series: ModelSeries, model: str, backend: str, status: str) -> Any:
        child = series.requests.get(status)
        if child is None:
            child = series.requests[status] = self.requests.labels(model, backend, status)
        return child

    def set_active(self, model: str, backend: str, version: str) -> None:
        for labels in list(self._active_labels()):
            self.active_model.labels(*labels).set(0)
        self.active_model.labels(model, backend, version).set(1)

    def _active_labels(self) -> list[tuple[str, str, str]]:
        return [
            (s.labels["model"], s.labels["backend"], s.labels["version"])
            for metric in self.active_model.collect()
            for s in metric.samples
        ]
