"""Crash loops of every watched LlamaDeployment from kube-state-metrics: one Prometheus query per interval for the
whole fleet, not one per deployment.

When Prometheus is configured (LLAMAOPS_PROMETHEUS_URL), one background thread (like handlers.rechecks, not kopf
timers) asks it every LLAMAOPS_PROMETHEUS_INTERVAL seconds for the series of every container in the watched
namespaces that crashed or waits (health.detect.fleet_crash_query), splits the answer per LlamaDeployment through
the pod index, and keeps it as the latest snapshot. Crash-loop evaluations (handlers.crashloop.observe) read their
deployment's series from the snapshot rather than querying. A deployment whose series show a crash loop with a
crash not seen before, and whose crash loop is not already being handled, is evaluated at once: Prometheus detects
on its own what pod status does not show (a pod watch that missed an update). The query rate is one per interval
whatever the number of deployments, and the answer grows with the containers that crashed, not with the fleet.
With kopf peering, ``may_act`` keeps a standby replica from evaluating; one that has never been active has no pod
index yet and asks nothing.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from llama_operator.handlers import metrics, rechecks
from llama_operator.handlers.outage import Outage
from llama_operator.health import PrometheusError, detect_from_metrics
from llama_operator.health.detect import CrashLoopMetrics, fleet_crash_query, split_fleet_metrics
from llama_operator.health.prometheus import PrometheusClient, PrometheusConfig

DEFAULT_INTERVAL_S = 2.0
log = logging.getLogger(__name__)
Key = tuple[str, str]  # (namespace, LlamaDeployment name)
# The pod index of handlers.crashloop: (namespace, owner) -> the owner's pods.
PodIndex = Mapping[Key, Iterable[Mapping[str, Any]]]


def client_from_env() -> PrometheusClient | None:
    config = PrometheusConfig.from_env()
    return PrometheusClient(config) if config is not None else None


def interval_from_env(environ: Mapping[str, str] | None = None) -> float:
    """LLAMAOPS_PROMETHEUS_INTERVAL in seconds (``5`` or ``5s``); DEFAULT_INTERVAL_S when unset."""
    env = os.environ if environ is None else environ
    text = env.get("LLAMAOPS_PROMETHEUS_INTERVAL", "").strip()
    if not text:
        return DEFAULT_INTERVAL_S
    try:
        seconds = float(text.removesuffix("s"))
    except ValueError:
        raise ValueError(f"LLAMAOPS_PROMETHEUS_INTERVAL must be seconds, got {text!r}") from None
    if not 0.1 <= seconds <= 3600:
        raise ValueError(f"LLAMAOPS_PROMETHEUS_INTERVAL must be between 0.1 and 3600 seconds, got {text!r}")
    return seconds


@dataclass(frozen=True)
class Snapshot:
    taken: float  # time.monotonic()
    metrics: Mapping[Key, CrashLoopMetrics]


@dataclass
class FleetView:
    """The latest answer, per LlamaDeployment. ``max_age_s``: older than this, it no longer says anything (the
    queries fail: detection is pod status's alone)."""

    max_age_s: float = 3 * DEFAULT_INTERVAL_S
    _snapshot: Snapshot | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def store(self, snapshot: Snapshot) -> None:
        with self._lock:
            self._snapshot = snapshot

    def latest(self, key: Key) -> CrashLoopMetrics | None:
        """This deployment's series in a fresh answer (empty when it has none); None without a fresh answer."""
        with self._lock:
            snapshot = self._snapshot
        if snapshot is None or time.monotonic() - snapshot.taken > self.max_age_s:
            return None
        return snapshot.metrics.get(key, CrashLoopMetrics())


VIEW = FleetView()


def owners(index: PodIndex) -> dict[Key, Key]:
    """(namespace, pod name) -> its LlamaDeployment, from the pod index. kopf updates the index from its own thread:
    a read that meets a change is tried again."""
    for _ in range(5):
        try:
            return {(key[0], pod["metadata"]["name"]): key for key in list(index) for pod in index.get(key, ())}
        except RuntimeError:  # changed size during iteration
            continue
    return {}


def sweep(client: PrometheusClient, query: str, index: PodIndex, view: FleetView) -> list[Key]:
    """One query: the snapshot for every deployment, and the deployments whose series show a crash loop with a
    crash not seen before (to evaluate now). Raises PrometheusError."""
    try:
        answer = client.query(query)
    except PrometheusError:
        metrics.PROMETHEUS_QUERIES.labels("error").inc()
        raise
    metrics.PROMETHEUS_QUERIES.labels("ok").inc()
    taken = time.monotonic()
    pods: dict[Key, Key] | None = None

    def owner(namespace: str, pod: str) -> Key | None:
        nonlocal pods
        if pods is None:
            pods = owners(index)  # only when the answer has series: a quiet fleet costs no walk of the index
        return pods.get((namespace, pod))

    split = split_fleet_metrics(answer.samples, owner)
    view.store(Snapshot(taken, split))
    now = datetime.now(UTC)
    due = []
    for key, series in split.items():
        seen = detect_from_metrics(series)
        if seen.crash_looping and metrics.crash_loop_seen("Prometheus", key, seen.last_crash, now):
            due.append(key)
    return due


def start(
    client: PrometheusClient,
    namespaces: str | None,
    interval_s: float,
    index: Callable[[], PodIndex | None],
    evaluate: Callable[[str, str], None],
    stop: threading.Event,
    may_act: Callable[[str], bool] = rechecks.always,
    view: FleetView = VIEW,
) -> threading.Thread:
    """Sweep every ``interval_s`` until ``stop`` is set. ``index()`` is the pod index (None until kopf has built
    it); ``evaluate(namespace, name)`` is one crash-loop evaluation; ``may_act`` gates it as in handlers.rechecks."""
    query = fleet_crash_query(namespaces)
    view.max_age_s = 2 * interval_s + client.config.timeout_s

    def loop() -> None:
        outage = Outage(
            log,
            "Prometheus unavailable, detecting from pod status only: %s",
            "Prometheus answers again: crash loops are detected from it too",
        )
        while not stop.wait(interval_s):
            pods = index()
            if pods is None:
                continue  # no pod event yet: no pod can be told apart
            try:
                due = sweep(client, query, pods, view)
            except PrometheusError as error:
                outage.failed(error)
                continue
            except Exception:
                log.exception("the fleet's crash-loop query failed")
                continue
            outage.answered()
            for namespace, name in due:
                if rechecks.wants((namespace, name), rechecks.CRASH_LOOP) or not rechecks.active_in(may_act, namespace):
                    continue  # already handled: its rechecks look every few seconds
                log.info("%s/%s: crash loop seen in Prometheus; evaluating", namespace, name)
                try:
                    evaluate(namespace, name)
                except Exception:
                    log.exception("crash-loop evaluation of %s/%s failed", namespace, name)

    thread = threading.Thread(target=loop, name="llamaops-fleet-health", daemon=True)
    thread.start()
    return thread
