"""Prometheus metrics, in a registry of their own per app (tests build many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from app.backends.protocol import Usage

# 5 ms to 120 s: a CPU model and a cloud API on one scale.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# 0.5 ms to 2 s per output token.
TPOT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
MODEL_LABELS = ("model", "backend")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.per_model = PerModelMetrics(r)
        self.shadow = ShadowMetrics(r)
        self._declare_model_lifecycle(r)
        self.fallbacks = Counter(
            "bankllm_fallbacks_total",
            "Requests a remote model failed before its first token, answered by FALLBACK_MODEL.",
            ("model", "fallback", "error_type"),
            registry=r,
        )
        self.handoffs = Counter(
            "bankllm_handoffs_total",
            "Answers handed off to a person, by model and reason (out_of_scope, low_confidence).",
            ("model", "backend", "reason"),
            registry=r,
        )
        self.pii_redactions = Counter(
            "bankllm_pii_redactions_total",
            "Customer numbers found in prompts to remote models (action: redacted|blocked).",
            ("kind", "action"),
            registry=r,
        )
        self.log_write_errors = Counter(
            "bankllm_log_write_errors_total",
            "Benchmark-log rows dropped because the file could not be written (disk full...).",
            registry=r,
        )
        self.audit_write_errors = Counter(
            "bankllm_audit_write_errors_total",
            "Audit rows that could not be written (an action's asking refuses it: 503).",
            registry=r,
        )
        self.unauthenticated = Counter(
            "bankllm_unauthenticated_total",
            "Requests refused for a missing or invalid key (counted here, never logged as rows).",
            ["api"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "bankllm_queue_depth", "Requests waiting for a generation slot.", registry=r
        )

    def _declare_model_lifecycle(self, r: CollectorRegistry) -> None:
        """The models' loads and switches, and which one serves."""
        self.switch_latency = Histogram(
            "bankllm_model_switch_seconds",
            "Time to load and warm up the model switched to.",
            ("from", "to"),
            buckets=LATENCY_BUCKETS,
            registry=r,
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
        self.active_model = Gauge(
            "bankllm_active_model_info",
            "1 for the model that serves now, 0 for earlier ones.",
            ("model", "backend", "version"),
            registry=r,
        )

    def series(self, model: str, backend: str) -> ModelSeries:
        """The model's children of the per-model metrics (made on first use)."""
        return self.per_model.series(model, backend)

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


class ShadowMetrics:
    """What the shadow model does with the requests mirrored to it."""

    def __init__(self, r: CollectorRegistry) -> None:
        self.requests = Counter(
            "bankllm_shadow_requests_total",
            "Mirrored requests the shadow model answered, by its outcome.",
            ("shadow", "status"),
            registry=r,
        )
        self.agreement = Counter(
            "bankllm_shadow_agreement_total",
            "Mirrored requests both models answered, by whether their intents agree.",
            ("shadow", "agree"),
            registry=r,
        )
        self.dropped = Counter(
            "bankllm_shadow_dropped_total",
            "Sampled requests not mirrored (reason: queue_full|cost_cap|replaced|stopped).",
            ("shadow", "reason"),
            registry=r,
        )
        self.latency = Histogram(
            "bankllm_shadow_latency_seconds",
            "Time the shadow model took to answer a mirrored request.",
            ("shadow",),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )


COST_HELP = "Estimated cost in US dollars: a cloud provider's bill, a local model's machine time."


class PerModelMetrics:
    """The series every request writes, labelled by the model that answered it."""

    def __init__(self, r: CollectorRegistry) -> None:
        self._series: dict[tuple[str, str], ModelSeries] = {}
        self.request_latency = Histogram(
            "bankllm_request_latency_seconds",
            "Time from arrival to the last byte of a request.",
            MODEL_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "bankllm_time_to_first_token_seconds",
            "Time from arrival to the first output token.",
            MODEL_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tpot = Histogram(
            "bankllm_time_per_output_token_seconds",
            "Mean time per output token after the first.",
            MODEL_LABELS,
            buckets=TPOT_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "bankllm_requests",
            "Generate requests by outcome.",
            (*MODEL_LABELS, "status"),
            registry=r,
        )
        self.prompt_tokens = Counter(
            "bankllm_prompt_tokens", "Prompt tokens read.", MODEL_LABELS, registry=r
        )
        self.completion_tokens = Counter(
            "bankllm_completion_tokens", "Tokens generated.", MODEL_LABELS, registry=r
        )
        self.cost_usd = Counter("bankllm_cost_usd", COST_HELP, MODEL_LABELS, registry=r)
        self.in_flight = Gauge(
            "bankllm_requests_in_flight", "Requests generating now.", MODEL_LABELS, registry=r
        )

    def series(self, model: str, backend: str) -> ModelSeries:
        """The model's children (made on first use)."""
        found = self._series.get((model, backend))
        if found is None:
            found = self._series[(model, backend)] = ModelSeries(self, model, backend)
        return found


class ModelSeries:
    """One model's children of the per-model metrics: what a finished request writes."""

    def __init__(self, metrics: PerModelMetrics, model: str, backend: str) -> None:
        self._requests = metrics.requests
        self._labels = (model, backend)
        self._requests_by_status: dict[str, Counter] = {}  # children made on first use
        self.latency = metrics.request_latency.labels(model, backend)
        self.ttft = metrics.ttft.labels(model, backend)
        self.tpot = metrics.tpot.labels(model, backend)
        self.prompt_tokens = metrics.prompt_tokens.labels(model, backend)
        self.completion_tokens = metrics.completion_tokens.labels(model, backend)
        self.cost_usd = metrics.cost_usd.labels(model, backend)
        self.in_flight = metrics.in_flight.labels(model, backend)

    def count(
        self,
        status: str,
        times: tuple[float, float | None, float | None],
        usage: Usage,
        cost_usd: float | None,
    ) -> None:
        """One finished request: its outcome, its times (latency, TTFT, TPOT in seconds), its
        tokens and its cost."""
        latency_s, ttft_s, tpot_s = times
        if (requests := self._requests_by_status.get(status)) is None:
            requests = self._requests_by_status[status] = self._requests.labels(
                *self._labels, status
            )
        requests.inc()
        self.latency.observe(latency_s)
        if ttft_s is not None:
            self.ttft.observe(ttft_s)
        if tpot_s is not None:
            self.tpot.observe(tpot_s)
        self.prompt_tokens.inc(usage.prompt_tokens)
        self.completion_tokens.inc(usage.completion_tokens)
        if cost_usd:
            self.cost_usd.inc(cost_usd)
