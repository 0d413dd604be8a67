"""The canary's metric analysis, the reading side: one Prometheus query per look at a holding canary (every series
of every pod of both tracks in it, health.regression.analysis_query), at most one per LLAMAOPS_PROMETHEUS_INTERVAL
per deployment however often it is looked at. desired.analysis says what to ask; health.regression judges."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from llama_operator.desired import Desired
from llama_operator.desired import analysis as asking
from llama_operator.handlers import fleet, metrics
from llama_operator.health import PrometheusError
from llama_operator.health.prometheus import PrometheusClient
from llama_operator.health.regression import Verdict, analysis_query, judge, track_of

log = logging.getLogger(__name__)
_lock = threading.Lock()
# (namespace, name) -> (time.monotonic(), the question, its verdict)
_recent: dict[tuple[str, str], tuple[float, asking.Ask, Verdict]] = {}


@functools.cache
def _client() -> PrometheusClient | None:
    return fleet.client_from_env()


@functools.cache
def _interval_s() -> float:
    return fleet.interval_from_env()


def verdict(
    state: Desired, pods: Iterable[Mapping[str, Any]], now: datetime, client: PrometheusClient | None = None
) -> Verdict | None:
    """The canary's verdict on vLLM's metrics for this look; None when there is nothing to judge (no canary holds,
    analysis off, no Prometheus) or Prometheus does not answer (crash loop and readiness still decide)."""
    client = client if client is not None else _client()
    question = asking.ask(state, pods, now, client is not None)
    key = (state.owner.namespace, state.owner.name)
    if question is None or client is None:
        with _lock:
            _recent.pop(key, None)
        return None
    with _lock:
        recent = _recent.get(key)
    if recent is not None and recent[1].canary == question.canary and time.monotonic() - recent[0] < _interval_s():
        return recent[2]
    try:
        answer = client.query(analysis_query(question.namespace, question.canary + question.stable, question.window_s))
    except PrometheusError as error:
        metrics.PROMETHEUS_QUERIES.labels("error").inc()
        log.warning("%s/%s: the canary's metric analysis has no answer: %s", *key, error)
        return None
    metrics.PROMETHEUS_QUERIES.labels("ok").inc()
    canary, stable = track_of(answer.samples, question.canary), track_of(answer.samples, question.stable)
    found = judge(canary, stable, question.thresholds)
    with _lock:
        _recent[key] = (time.monotonic(), question, found)
    return found
