"""The operator's own Prometheus metrics: reconciles by result and duration, deployments by phase, findings by
code. Gauges are recomputed from per-object state so a deleted LlamaDeployment stops counting."""

from __future__ import annotations

import threading
from collections import Counter

from prometheus_client import Counter as CounterMetric
from prometheus_client import Gauge, Histogram

RECONCILES = CounterMetric(
    "llamaops_reconcile", "LlamaDeployment reconciles by result (applied, invalid, error)", ["result"]
)
RECONCILE_SECONDS = Histogram(
    "llamaops_reconcile_duration_seconds",
    "Time to validate, render, apply and publish status for one LlamaDeployment",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PHASES = Gauge("llamaops_deployments", "LlamaDeployments by phase", ["phase"])
FINDINGS = Gauge(
    "llamaops_findings", "Current findings across LlamaDeployments by code and severity", ["code", "severity"]
)

_lock = threading.Lock()
_phase: dict[tuple[str, str], str] = {}
_findings: dict[tuple[str, str], list[tuple[str, str]]] = {}


def _publish() -> None:
    phases = Counter(_phase.values())
    for phase in {*phases, *(labels[0] for labels in _known_labels(PHASES))}:
        PHASES.labels(phase).set(phases.get(phase, 0))
    findings = Counter(item for items in _findings.values() for item in items)
    for code, severity in {*findings, *_known_labels(FINDINGS)}:
        FINDINGS.labels(code, severity).set(findings.get((code, severity), 0))


def _known_labels(gauge: Gauge) -> list[tuple[str, ...]]:
    return [tuple(sample.labels.values()) for metric in gauge.collect() for sample in metric.samples]


def observe(key: tuple[str, str], phase: str, findings: list[tuple[str, str]]) -> None:
    """Record the phase and findings (code, severity) of one LlamaDeployment (namespace, name)."""
    with _lock:
        _phase[key] = phase
        _findings[key] = findings
        _publish()


def forget(key: tuple[str, str]) -> None:
    with _lock:
        _phase.pop(key, None)
        _findings.pop(key, None)
        _publish()
