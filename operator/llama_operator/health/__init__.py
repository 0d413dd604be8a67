"""Crash-loop health: classification of terminations, detection from pod status or Prometheus, and the
remediation policy (pure), plus the Prometheus HTTP client (the one edge here, in ``prometheus``)."""

from llama_operator.health.check import Check, check
from llama_operator.health.classify import (
    SIGNATURES,
    Classification,
    CrashContext,
    CrashReport,
    Signature,
    Termination,
    classify,
    crash_context,
    parse_crash_report,
)
from llama_operator.health.detect import (
    CrashLoopMetrics,
    CrashLoopObservation,
    CrashLoopQueries,
    combine,
    config_hash,
    crash_loop_queries,
    detect_from_metrics,
    detect_from_pods,
)
from llama_operator.health.policy import Decision, Event, crash_since, decide, with_condition
from llama_operator.health.promql import (
    PrometheusError,
    PrometheusQueryError,
    PrometheusResponseError,
    PrometheusTimeout,
    PrometheusUnavailable,
    QueryResult,
    Sample,
    Series,
)
from llama_operator.health.remedies import (
    KNOWN_ISSUE_REMEDIES,
    Action,
    chunk_aligned_max_model_len,
    effective_spec,
    running_config,
)

__all__ = [
    "KNOWN_ISSUE_REMEDIES",
    "SIGNATURES",
    "Action",
    "Check",
    "Classification",
    "CrashContext",
    "CrashLoopMetrics",
    "CrashLoopObservation",
    "CrashLoopQueries",
    "CrashReport",
    "Decision",
    "Event",
    "PrometheusError",
    "PrometheusQueryError",
    "PrometheusResponseError",
    "PrometheusTimeout",
    "PrometheusUnavailable",
    "QueryResult",
    "Sample",
    "Series",
    "Signature",
    "Termination",
    "check",
    "chunk_aligned_max_model_len",
    "classify",
    "combine",
    "config_hash",
    "crash_context",
    "crash_loop_queries",
    "crash_since",
    "decide",
    "detect_from_metrics",
    "detect_from_pods",
    "effective_spec",
    "parse_crash_report",
    "running_config",
    "with_condition",
]
