"""Prometheus metrics of the routing server (``GET /metrics``).

Every series lives in the app's own :class:`prometheus_client.CollectorRegistry` (no process-wide
singleton), so two apps in one process (tests, benchmarks) never mix their counts.

Series (``model`` is the candidate that served; ``method`` how its joules were obtained: ``nvml``,
``rapl``, ``estimate``, ``none`` -- measured and estimated joules are never summed together)::

    energyrouter_requests_total{model, stream, outcome}
    energyrouter_fallbacks_total{from_model, to_model}
    energyrouter_rejected_total{reason}                   before any model ran: busy (429, no queue), queue_full
                                                          (429 at once), queue_timeout (429 after the longest wait),
                                                          too_large (413), unauthorized (401), client_left (the
                                                          client left while its request waited in the queue: 499)
    energyrouter_energy_joules_total{model, method}       joules of readings that had their device to themselves,
                                                          failed attempts included (these add up)
    energyrouter_failed_energy_joules_total{model, method}   the part of the above spent by attempts that raised
    energyrouter_overlapped_energy_joules_total{model, method}   sum of readings flagged "overlapped": each holds
                                                          the whole device over its window, so this double-counts
                                                          (an upper bound, never a total)
    energyrouter_tokens_total{model, kind}                kind: input | output
    energyrouter_predicted_runtime_seconds{model}         histogram
    energyrouter_measured_runtime_seconds{model}          histogram
    energyrouter_predicted_energy_joules{model}           histogram
    energyrouter_measured_energy_joules{model, method}    histogram of answers' non-overlapped readings
    energyrouter_prediction_error_ratio{model, target}    histogram of measured / predicted (target: runtime | energy;
                                                          energy from non-overlapped readings only)
    energyrouter_in_flight{model}                         gauge
    energyrouter_queued                                   gauge: requests waiting for a place (limits.queue_length)
    energyrouter_queue_wait_seconds                       histogram of the waits of requests that queued (those
                                                          given up too: timed out, client left, shutdown)
    energyrouter_decision_seconds                         histogram of the routing decision's latency
    energyrouter_request_seconds{model}                   histogram of the whole request
    energyrouter_feedback_total{outcome}                  learned | unknown_run | already_scored | not_learned |
                                                          bad_token

Counters whose labels are known in advance (requests, fallbacks between candidates, rejection reasons)
exist at 0 from the start: ``rate()`` then sees a series' first increase, and dashboards and the recording
rules in ``deploy/prometheus/rules.yml`` show 0, not "no data", before the first event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from langchain_energyrouter.energy.base import FLAG_OVERLAPPED

__all__ = ["CONTENT_TYPE_LATEST", "REJECTION_REASONS", "ServerMetrics"]

_SECONDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_JOULES = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0)
_RATIO = (0.25, 0.5, 0.67, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 4.0)
REJECTION_REASONS = ("busy", "queue_full", "queue_timeout", "too_large", "unauthorized", "client_left")
"""``reason`` labels of ``energyrouter_rejected_total`` (the first three answer 429)."""
_DECISION = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)


class ServerMetrics:
    """The server's Prometheus series, in a registry of their own."""

    def __init__(self, candidates: list[str]) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        ns = "energyrouter"
        self.requests = Counter(
            "requests", "Chat completions by serving model", ["model", "stream", "outcome"], namespace=ns,
            registry=registry,
        )  # fmt: skip
        self.fallbacks = Counter(
            "fallbacks", "Requests answered by another model after one failed", ["from_model", "to_model"],
            namespace=ns, registry=registry,
        )  # fmt: skip
        self.rejected = Counter(
            "rejected", "Requests refused before any model ran", ["reason"], namespace=ns, registry=registry
        )
        self.energy = Counter(
            "energy_joules", "Energy of answers, joules, by how it was obtained", ["model", "method"], namespace=ns,
            registry=registry,
        )  # fmt: skip
        self.failed_energy = Counter(
            "failed_energy_joules", "Energy of attempts that raised, joules (part of energy_joules_total)",
            ["model", "method"], namespace=ns, registry=registry,
        )  # fmt: skip
        self.overlapped_energy = Counter(
            "overlapped_energy_joules", "Sum of overlapped readings, joules: double-counts shared joules (upper bound)",
            ["model", "method"], namespace=ns, registry=registry,
        )  # fmt: skip
        self.tokens = Counter("tokens", "Tokens by model", ["model", "kind"], namespace=ns, registry=registry)
        self.predicted_runtime = Histogram(
            "predicted_runtime_seconds", "Predicted runtime of the serving model", ["model"], namespace=ns,
            registry=registry, buckets=_SECONDS,
        )  # fmt: skip
        self.measured_runtime = Histogram(
            "measured_runtime_seconds", "Measured runtime of the serving model", ["model"], namespace=ns,
            registry=registry, buckets=_SECONDS,
        )  # fmt: skip
        self.predicted_energy = Histogram(
            "predicted_energy_joules", "Predicted energy of the serving model", ["model"], namespace=ns,
            registry=registry, buckets=_JOULES,
        )  # fmt: skip
        self.measured_energy = Histogram(
            "measured_energy_joules", "Measured energy of the serving model", ["model", "method"], namespace=ns,
            registry=registry, buckets=_JOULES,
        )  # fmt: skip
        self.error_ratio = Histogram(
            "prediction_error_ratio", "Measured / predicted, per answer", ["model", "target"], namespace=ns,
            registry=registry, buckets=_RATIO,
        )  # fmt: skip
        self.in_flight = Gauge(
            "in_flight", "Requests in flight per candidate", ["model"], namespace=ns, registry=registry
        )
        self.queued = Gauge("queued", "Requests waiting for a place", namespace=ns, registry=registry)
        self.queue_wait = Histogram(
            "queue_wait_seconds", "Waits of requests that queued for a place", namespace=ns, registry=registry,
            buckets=_SECONDS,
        )  # fmt: skip
        self.decision = Histogram(
            "decision_seconds", "Latency of the routing decision", namespace=ns, registry=registry, buckets=_DECISION
        )
        self.request_seconds = Histogram(
            "request_seconds", "Latency of whole chat completions", ["model"], namespace=ns, registry=registry,
            buckets=_SECONDS,
        )  # fmt: skip
        self.feedback = Counter("feedback", "Feedback rows received", ["outcome"], namespace=ns, registry=registry)
        for name in candidates:  # series exist (at 0) from the start: dashboards need no first request
            self.in_flight.labels(model=name).set(0)
            for stream in ("false", "true"):
                for outcome in ("ok", "error"):
                    self.requests.labels(model=name, stream=stream, outcome=outcome)
            for other in candidates:
                if other != name:
                    self.fallbacks.labels(from_model=name, to_model=other)
        for reason in REJECTION_REASONS:
            self.rejected.labels(reason=reason)

    def observe_answer(self, model: str, metadata: Mapping[str, Any], usage: Mapping[str, Any] | None) -> None:
        """Record one answer's predicted and measured runtime and energy (``response_metadata``)."""
        energy = metadata.get("energy") or {}
        method = str(energy.get("method") or "none")
        measured_j = energy.get("energy_j")
        measured_s = energy.get("runtime_s")
        predicted_j = energy.get("predicted_energy_j")
        predicted_s = energy.get("predicted_runtime_s")
        if isinstance(predicted_s, (int, float)):
            self.predicted_runtime.labels(model=model).observe(predicted_s)
        if isinstance(predicted_j, (int, float)):
            self.predicted_energy.labels(model=model).observe(predicted_j)
        if isinstance(measured_s, (int, float)):
            self.measured_runtime.labels(model=model).observe(measured_s)
            if isinstance(predicted_s, (int, float)) and predicted_s > 0:
                self.error_ratio.labels(model=model, target="runtime").observe(measured_s / predicted_s)
        if self._count_energy(model, energy) and isinstance(measured_j, (int, float)):
            self.measured_energy.labels(model=model, method=method).observe(measured_j)
            if isinstance(predicted_j, (int, float)) and predicted_j > 0:
                self.error_ratio.labels(model=model, target="energy").observe(measured_j / predicted_j)
        for kind in ("input", "output"):
            count = (usage or {}).get(f"{kind}_tokens")
            if isinstance(count, int):
                self.tokens.labels(model=model, kind=kind).inc(count)

    def observe_failure(self, failure: Mapping[str, Any]) -> None:
        """Record the joules of one attempt that raised (a ``routing["failures"]`` entry): they were spent."""
        model = str(failure.get("model") or "unknown")
        if self._count_energy(model, failure):
            self.failed_energy.labels(model=model, method=str(failure.get("method"))).inc(failure["energy_j"])

    def _count_energy(self, model: str, reading: Mapping[str, Any]) -> bool:
        """Add a reading's joules to the energy counter, or to the overlapped one; True when it went to the first.

        Overlapped readings each hold the whole device's joules over their window (other calls' work
        included), so adding them to ``energy_joules_total`` would count shared joules once per call.
        """
        energy_j = reading.get("energy_j")
        method = str(reading.get("method") or "none")
        if not isinstance(energy_j, (int, float)) or method == "none":
            return False
        if FLAG_OVERLAPPED in (reading.get("flags") or ()):
            self.overlapped_energy.labels(model=model, method=method).inc(energy_j)
            return False
        self.energy.labels(model=model, method=method).inc(energy_j)
        return True

    def exposition(self) -> bytes:
        """The text format ``/metrics`` serves."""
        return generate_latest(self.registry)
