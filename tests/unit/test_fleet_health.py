"""One Prometheus query per interval for the whole fleet's crash loops (health.detect.fleet_crash_query,
split_fleet_metrics; handlers.fleet): the query, its answer split per deployment, the snapshot evaluations read,
and which deployments a sweep evaluates."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from llama_operator.handlers import crashloop, fleet, metrics, rechecks
from llama_operator.health import CrashLoopMetrics, PrometheusUnavailable, QueryResult, Sample, detect_from_metrics
from llama_operator.health.detect import fleet_crash_query, split_fleet_metrics
from llama_operator.health.promql import namespace_regex
from tests.unit.pod_statuses import pod, running

NS = "fleet-a"
PREFIX = "kube_pod_container_status_"


def series(name: str, pod_name: str, value: float, namespace: str = NS, **labels: str) -> Sample:
    return Sample({"__name__": PREFIX + name, "namespace": namespace, "pod": pod_name, "container": "vllm", **labels},
                  value, time.time())  # fmt: skip


def crashed(pod_name: str, finished: datetime, restarts: int = 1, namespace: str = NS) -> list[Sample]:
    """What the fleet query answers for a container that crashed at ``finished`` and now backs off."""
    return [
        series("restarts_total", pod_name, restarts, namespace),
        series("waiting_reason", pod_name, 1, namespace, reason="CrashLoopBackOff"),
        series("last_terminated_reason", pod_name, 1, namespace, reason="Error"),
        series("last_terminated_exitcode", pod_name, 1, namespace),
        series("last_terminated_timestamp", pod_name, finished.timestamp(), namespace),
    ]


def whole_second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)  # as kube-state-metrics exports finishedAt


class FakePrometheus:
    def __init__(self, *answers: list[Sample] | Exception) -> None:
        self.answers = list(answers)
        self.queries: list[str] = []
        self.config = type("Config", (), {"timeout_s": 1.0, "url": "http://prometheus"})()

    def query(self, promql: str) -> QueryResult:
        self.queries.append(promql)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return QueryResult("vector", samples=tuple(answer))


def index(**owners: list[str]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The pod index: deployment name -> its pods' names, in NS."""
    return {(NS, owner): [pod(name, running(0)) for name in pods] for owner, pods in owners.items()}


def queries(result: str) -> float:
    return REGISTRY.get_sample_value("llamaops_prometheus_queries_total", {"result": result}) or 0.0


def seen_count(source: str) -> float:
    return REGISTRY.get_sample_value("llamaops_crash_loop_seen_seconds_count", {"source": source}) or 0.0


def test_namespace_patterns_become_one_regex() -> None:
    assert namespace_regex(["fleet-*"]) == "fleet-.*"
    assert namespace_regex(["a.b", "c?d"]) == r"a\.b|c.d"
    assert namespace_regex(["team-*, !team-pr-*"]) == "team-.*"  # exclusions: the index leaves their pods out
    # Every namespace: no selector at all.
    assert namespace_regex([]) is None
    assert namespace_regex(["!kube-system"]) is None
    assert namespace_regex(["*"]) is None


def test_the_fleet_query_selects_by_namespace_and_keeps_each_series_apart() -> None:
    query = fleet_crash_query("fleet-.*")
    assert query.startswith('kube_pod_container_status_restarts_total{namespace=~"fleet-.*"} > 0 or ')
    # Without on(__name__, ...), `or` would drop a container's other series next to its restart counter.
    assert " or on(__name__, namespace, pod, container) " in query
    for name in ("waiting_reason", "last_terminated_reason", "last_terminated_exitcode", "last_terminated_timestamp"):
        assert name in query
    assert query.endswith(',namespace=~"fleet-.*"}')
    assert "namespace" not in fleet_crash_query(None).replace("on(__name__, namespace, pod, container)", "")


def test_the_answer_splits_per_deployment_as_its_own_queries_would_answer() -> None:
    finished = whole_second(datetime.now(UTC))
    samples = [
        *crashed("a-1", finished, restarts=3),
        series("restarts_total", "a-2", 1),  # a second pod of a, restarted once an hour ago and running since
        series("last_terminated_timestamp", "a-2", (finished - timedelta(hours=1)).timestamp()),
        *crashed("b-1", finished - timedelta(seconds=5)),
        *crashed("stranger", finished),  # not a pod the operator manages
        Sample({"__name__": "up", "namespace": NS, "pod": "a-1"}, 1, 0),  # not a series detection reads
    ]
    owner_of = {(NS, "a-1"): "a", (NS, "a-2"): "a", (NS, "b-1"): "b"}
    split = split_fleet_metrics(samples, lambda namespace, name: owner_of.get((namespace, name)))
    assert set(split) == {"a", "b"}
    assert [s.labels["pod"] for s in split["a"].restarts] == ["a-1", "a-2"]
    alone = CrashLoopMetrics(
        restarts=tuple(
            s for s in samples if s.labels["pod"].startswith("a-") and s.labels["__name__"].endswith("total")
        ),
        waiting=(samples[1],),
        last_terminated_reason=(samples[2],),
        last_terminated_exit_code=(samples[3],),
        last_terminated_time=(samples[4], samples[6]),
    )
    assert detect_from_metrics(split["a"]) == detect_from_metrics(alone)
    assert detect_from_metrics(split["b"]).last_crash == finished - timedelta(seconds=5)
    # An evaluation reads the pods of the configuration that runs, crashes after the last remediation.
    since = finished - timedelta(minutes=1)
    assert detect_from_metrics(split["a"], since=since).crashing_pods == ("a-1",)
    assert not detect_from_metrics(split["a"].of_pods(["a-2"]), since=since).crash_looping
    assert {s.labels["pod"] for s in split["a"].of_pods(["a-2"]).last_terminated_time} == {"a-2"}


def test_one_query_per_sweep_and_each_new_crash_is_due_once() -> None:
    started = whole_second(datetime.now(UTC))
    view = fleet.FleetView()
    pods = index(**{"fleet-one": ["one-1"], "fleet-two": ["two-1"]})
    first, later = started + timedelta(seconds=1), started + timedelta(seconds=12)
    old = started - timedelta(hours=1)  # ended before the operator started: seen by kopf's resume, not timed here
    client = FakePrometheus(
        crashed("one-1", first) + crashed("two-1", old),
        crashed("one-1", first) + crashed("two-1", old),
        crashed("one-1", later) + crashed("two-1", old),
    )
    ok, timed = queries("ok"), seen_count("Prometheus")
    try:
        assert fleet.sweep(client, "q", pods, view) == [(NS, "fleet-one")]
        assert fleet.sweep(client, "q", pods, view) == []  # the same crash: evaluated already
        assert fleet.sweep(client, "q", pods, view) == [(NS, "fleet-one")]  # a new crash of the loop
    finally:
        metrics.forget((NS, "fleet-one"))
        metrics.forget((NS, "fleet-two"))
    assert client.queries == ["q", "q", "q"]
    assert queries("ok") == ok + 3
    assert seen_count("Prometheus") == timed + 2
    assert detect_from_metrics(view.latest((NS, "fleet-one")) or CrashLoopMetrics()).last_crash == later
    assert view.latest((NS, "quiet")) == CrashLoopMetrics()  # a fresh answer without its series: nothing crashed


def test_a_quiet_fleet_costs_one_query_and_no_walk_of_the_index() -> None:
    class Untouchable(dict[tuple[str, str], list[dict[str, Any]]]):
        def __iter__(self) -> Any:
            raise AssertionError("the index was walked")

    view = fleet.FleetView()
    assert fleet.sweep(FakePrometheus([]), "q", Untouchable(), view) == []
    assert view.latest((NS, "any")) == CrashLoopMetrics()


def test_errors_are_counted_and_an_old_answer_says_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    errors = queries("error")
    view = fleet.FleetView(max_age_s=5)
    with pytest.raises(PrometheusUnavailable):
        fleet.sweep(FakePrometheus(PrometheusUnavailable("down")), "q", {}, view)
    assert queries("error") == errors + 1
    assert view.latest((NS, "a")) is None  # no answer yet
    fleet.sweep(FakePrometheus([]), "q", {}, view)
    assert view.latest((NS, "a")) == CrashLoopMetrics()
    now = time.monotonic()
    monkeypatch.setattr(fleet.time, "monotonic", lambda: now + 6)
    assert view.latest((NS, "a")) is None


def test_the_interval_from_the_environment() -> None:
    assert fleet.interval_from_env({}) == fleet.DEFAULT_INTERVAL_S
    assert fleet.interval_from_env({"LLAMAOPS_PROMETHEUS_INTERVAL": "5s"}) == 5.0
    assert fleet.interval_from_env({"LLAMAOPS_PROMETHEUS_INTERVAL": "0.5"}) == 0.5
    for bad in ("fast", "0", "-1", "1h"):
        with pytest.raises(ValueError, match="LLAMAOPS_PROMETHEUS_INTERVAL"):
            fleet.interval_from_env({"LLAMAOPS_PROMETHEUS_INTERVAL": bad})


def test_an_evaluation_reads_the_fleet_answer_and_detects_from_it_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pod status shows nothing (a watch that missed the update); the fleet's answer shows the loop."""
    view = fleet.FleetView()
    monkeypatch.setattr(fleet, "VIEW", view)
    key = (NS, "missed")
    pods = [pod("missed-1", running(0))]
    assert crashloop.observe(key, pods, None, None).source == "PodStatus"  # no Prometheus answer yet
    crash = whole_second(datetime.now(UTC))
    fleet.sweep(
        FakePrometheus(crashed("missed-1", crash) + crashed("replaced-1", crash)), "q", index(missed=["missed-1"]), view
    )
    try:
        seen = crashloop.observe(key, pods, None, None)
        assert (seen.crash_looping, seen.source, seen.pod) == (True, "Prometheus", "missed-1")
        # A crash before the last remediation belongs to the configuration it replaced.
        assert not crashloop.observe(key, pods, crash, None).crash_looping
    finally:
        metrics.forget(key)


def test_the_loop_evaluates_new_crash_loops_once_and_logs_an_outage_once(caplog: pytest.LogCaptureFixture) -> None:
    crash = whole_second(datetime.now(UTC))
    answer = crashed("new-1", crash) + crashed("handled-1", crash)
    client = FakePrometheus(PrometheusUnavailable("refused"), PrometheusUnavailable("refused"), answer)
    evaluated: list[tuple[str, str]] = []
    done, stop = threading.Event(), threading.Event()

    def evaluate(namespace: str, name: str) -> None:
        evaluated.append((namespace, name))
        done.set()

    rechecks.track((NS, "handled"), {"remediation": {"crashLoop": {"signature": "unknown"}}}, 1)
    pods = index(new=["new-1"], handled=["handled-1"])
    try:
        with caplog.at_level(logging.INFO, logger=fleet.__name__):
            fleet.start(client, None, 0.01, lambda: pods, evaluate, stop, view=fleet.FleetView())
            assert done.wait(5)
            time.sleep(0.1)  # more sweeps of the same answer
    finally:
        stop.set()
        rechecks.forget((NS, "handled"))
        for name in ("new", "handled"):
            metrics.forget((NS, name))
    assert evaluated == [(NS, "new")]  # once; the loop being handled has its rechecks
    outages = [r for r in caplog.records if "Prometheus unavailable" in r.getMessage()]
    assert len(outages) == 1
    assert any("answers again" in r.getMessage() for r in caplog.records)
