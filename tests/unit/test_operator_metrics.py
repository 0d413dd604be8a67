"""The operator's phase and findings gauges, kept by incremental counts (handlers.metrics)."""

from __future__ import annotations

from prometheus_client import REGISTRY

from llama_operator.handlers import metrics


def _phase(phase: str) -> float | None:
    return REGISTRY.get_sample_value("llamaops_deployments", {"phase": phase})


def _finding(code: str, severity: str = "error") -> float | None:
    return REGISTRY.get_sample_value("llamaops_findings", {"code": code, "severity": severity})


def test_counts_follow_each_object_through_phases_and_deletion() -> None:
    a, b = ("metrics-test", "a"), ("metrics-test", "b")
    base = {p: _phase(p) or 0 for p in ("Running", "Invalid", "Progressing")}
    metrics.observe(a, "Progressing", [])
    metrics.observe(b, "Invalid", [("zz_test_code", "error"), ("zz_test_code", "error")])
    assert _phase("Progressing") == base["Progressing"] + 1
    assert _phase("Invalid") == base["Invalid"] + 1
    assert _finding("zz_test_code") == 2  # the same finding twice on one object counts twice

    metrics.observe(a, "Running", [])
    metrics.observe(b, "Running", [])  # fixed: its findings go
    assert _phase("Progressing") == base["Progressing"]
    assert _phase("Invalid") == base["Invalid"]
    assert _phase("Running") == base["Running"] + 2
    assert _finding("zz_test_code") == 0

    metrics.observe(b, "Running", [])  # unchanged: nothing moves
    metrics.forget(a)
    metrics.forget(b)
    metrics.forget(b)  # a second DELETED event is harmless
    assert _phase("Running") == base["Running"]
