"""The operator's own Prometheus metrics: reconciles by result and duration, deployments by phase, findings by
code. Gauges are recomputed from per-object state so a deleted LlamaDeployment stops counting."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime

from prometheus_client import Counter as CounterMetric
from prometheus_client import Gauge, Histogram

from llama_operator.health import Classification, Decision
from llama_operator.health.detect import parse_time

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
_phases: Counter[str] = Counter()
_finding_counts: Counter[tuple[str, str]] = Counter()


def _move(key: tuple[str, str], phase: str | None, findings: list[tuple[str, str]]) -> None:
    """Take one object's old phase and findings out of the counts and put the new ones in, setting only the
    gauges that changed: O(findings) per call, not O(objects) (every status publish calls this)."""
    old_phase, old_findings = _phase.pop(key, None), _findings.pop(key, [])
    if phase is not None:
        _phase[key], _findings[key] = phase, findings
    if old_phase != phase:
        for label, step in ((old_phase, -1), (phase, 1)):
            if label is not None:
                _phases[label] += step
                PHASES.labels(label).set(_phases[label])
    if old_findings != findings:
        for items, step in ((old_findings, -1), (findings, 1)):
            for item in items:
                _finding_counts[item] += step
        for item in {*old_findings, *findings}:
            FINDINGS.labels(*item).set(_finding_counts[item])


def observe(key: tuple[str, str], phase: str, findings: list[tuple[str, str]]) -> None:
    """Record the phase and findings (code, severity) of one LlamaDeployment (namespace, name)."""
    with _lock:
        _move(key, phase, findings)


def forget(key: tuple[str, str]) -> None:
    with _lock:
        _move(key, None, [])
        for source in SOURCES:
            _seen.pop((source, *key), None)


CRASHES = CounterMetric("llamaops_crashes", "Crash loops detected, by classified signature", ["signature"])
REMEDIATIONS = CounterMetric(
    "llamaops_remediations", "Remediations by action and result (applied, recovered, exhausted)", ["action", "result"]
)
DETECTION_SECONDS = Histogram(
    "llamaops_crash_detection_seconds",
    "Seconds from the first crash of a loop to its detection",
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 900),
)
RECOVERY_SECONDS = Histogram(
    "llamaops_crash_recovery_seconds",
    "Seconds from the first crash of a loop to the deployment serving healthy again",
    buckets=(5, 10, 20, 30, 60, 120, 300, 600, 1800),
)


def observe_remediation(decision: Decision, classification: Classification | None) -> None:
    """Count what a crash-loop decision did."""
    if decision.detection_seconds is not None:
        CRASHES.labels(classification.signature if classification else "unknown").inc()
        DETECTION_SECONDS.observe(decision.detection_seconds)
    if decision.outcome == "Remediated" and decision.action:
        REMEDIATIONS.labels(str(decision.action), "applied").inc()
    elif decision.outcome == "Recovered":
        REMEDIATIONS.labels(str(decision.action or "none"), "recovered").inc()
        if decision.recovery_seconds is not None:
            RECOVERY_SECONDS.observe(decision.recovery_seconds)
    elif decision.outcome == "Exhausted" and decision.events:
        REMEDIATIONS.labels(str(decision.action or "none"), "exhausted").inc()


ROLLOUTS = CounterMetric(
    "llamaops_rollouts",
    "Progressive rollouts finished, by result (Completed, Halted, Superseded) and reason",
    ["result", "reason"],
)
ROLLOUT_HALT_SECONDS = Histogram(
    "llamaops_rollout_halt_seconds",
    "Time from the canary's failure (its first crash, or its progress deadline) to the halted rollout",
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300),
)


def observe_rollout(before: object, after: object) -> None:
    """Count a rollout that completed or halted in this write (status.rollout before and after, camelCase)."""
    if not isinstance(after, dict) or after.get("phase") not in ("Completed", "Halted", "Superseded"):
        return
    if isinstance(before, dict) and (before.get("generation"), before.get("phase")) == (
        after.get("generation"),
        after.get("phase"),
    ):
        return
    ROLLOUTS.labels(str(after["phase"]), str(after.get("reason", ""))).inc()
    failed, finished = parse_time(after.get("failedAt")), parse_time(after.get("finishedAt"))
    if after["phase"] == "Halted" and failed is not None and finished is not None:
        ROLLOUT_HALT_SECONDS.observe(max(0.0, (finished - failed).total_seconds()))


SOURCES = ("PodStatus", "Prometheus")
CRASH_LOOP_SEEN_SECONDS = Histogram(
    "llamaops_crash_loop_seen_seconds",
    "Seconds from a crash of a crash-looping LlamaDeployment (its container's finishedAt) to the operator seeing "
    "it, by source: PodStatus (the pod watch) or Prometheus (kube-state-metrics, one query per interval)",
    ["source"],
    buckets=(0.5, 1, 2, 3, 4, 5, 7.5, 10, 20, 30, 60, 300),
)
PROMETHEUS_QUERIES = CounterMetric("llamaops_prometheus_queries", "Queries sent to Prometheus, by result", ["result"])
# The newest crash each source has shown, per LlamaDeployment: each crash is counted once per source.
_seen: dict[tuple[str, str, str], datetime] = {}
_STARTED = datetime.now(UTC)


def crash_loop_seen(source: str, key: tuple[str, str], crash: datetime | None, now: datetime) -> bool:
    """Record that ``source`` shows LlamaDeployment ``key`` (namespace, name) crash-looping with its newest crash
    ended at ``crash``; True when that crash is new to this source and ended while the operator ran (it is timed).
    A crash that ended before the operator started was never seen as it happened: it is remembered only."""
    if crash is None:
        return False
    with _lock:
        seen = _seen.get((source, *key))
        if seen is not None and crash <= seen:
            return False
        _seen[(source, *key)] = crash
    if crash < _STARTED.replace(microsecond=0):  # finishedAt has whole seconds
        return False
    CRASH_LOOP_SEEN_SECONDS.labels(source).observe(max(0.0, (now - crash).total_seconds()))
    return True
