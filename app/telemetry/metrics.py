"""Prometheus metrics, in a registry of their own per app (tests build many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from app.telemetry.tallies import LATENCY_BUCKETS, ModelTally, PerModel


class Metrics:
    def __init__(self) -> None:
        self._tallies: dict[tuple[str, str], ModelTally] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        r.register(PerModel(self._tallies))  # the series every request writes (tallies.py)
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
        self.queue_depth = Gauge(
            "bankllm_queue_depth", "Requests waiting for a generation slot.", registry=r
        )
        self.active_model = Gauge(
            "bankllm_active_model_info",
            "1 for the model that serves now, 0 for earlier ones.",
            ("model", "backend", "version"),
            registry=r,
        )

    def series(self, model: str, backend: str) -> ModelTally:
        """The model's per-model series (made on first use)."""
        found = self._tallies.get((model, backend))
        if found is None:
            found = self._tallies[(model, backend)] = ModelTally()
        return found

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
