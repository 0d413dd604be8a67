"""Crash-loop detection from pod status (shaped as the API server and the KWOK crash stage write it) and from
kube-state-metrics samples; garbage never breaks it."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from llama_operator.health import (
    CrashLoopMetrics,
    Sample,
    combine,
    crash_loop_queries,
    detect_from_metrics,
    detect_from_pods,
)
from llama_operator.health.detect import LogSource, containers_of, parse_time, unexplained_crash
from tests.unit.pod_statuses import MESSAGE, T0, at, backing_off, pod, running, terminated


def test_healthy_pods() -> None:
    seen = detect_from_pods([pod("a", running(0)), pod("b", running(5))])
    assert not seen.crash_looping
    assert seen.source == "PodStatus"
    assert seen.healthy_since == T0 + timedelta(seconds=5)
    assert seen.pods == 2


def test_crash_loop_back_off_with_the_termination_message() -> None:
    seen = detect_from_pods([pod("a", running(0)), pod("b", backing_off(1, terminated(0, 3)))])
    assert seen.crash_looping
    assert seen.pod == "b"
    assert seen.container == "vllm"
    assert seen.termination is not None
    assert seen.termination.message == MESSAGE
    assert seen.termination.exit_code == 1
    assert seen.first_crash == seen.last_crash == T0 + timedelta(seconds=3)
    assert seen.crashing_pods == ("b",)
    assert seen.healthy_since is None
    assert "CrashLoopBackOff" in seen.why


def test_first_and_last_crash_across_pods() -> None:
    seen = detect_from_pods([pod("a", backing_off(2, terminated(20, 23))), pod("b", backing_off(1, terminated(0, 3)))])
    assert seen.first_crash == T0 + timedelta(seconds=3)
    assert seen.last_crash == T0 + timedelta(seconds=23)
    assert seen.pod == "a"  # the latest crash is the one classified
    assert seen.restarts == 3


def test_restarted_and_running_again_still_counts() -> None:
    seen = detect_from_pods([pod("a", running(13, ready=True, restarts=1, last=terminated(0, 3)))])
    assert seen.crash_looping
    assert seen.healthy_since is None


def test_min_restarts() -> None:
    pods = [pod("a", running(13, restarts=1, last=terminated(0, 3)))]
    assert not detect_from_pods(pods, min_restarts=2).crash_looping
    assert detect_from_pods(pods, min_restarts=1).crash_looping


def test_exit_code_0_is_a_crash_for_a_server() -> None:
    # Upstream vLLM 0.32 exits 0 after its engine dies (tests/fixtures/vllm/).
    seen = detect_from_pods([pod("a", backing_off(1, terminated(0, 3, exit_code=0, message="")))])
    assert seen.crash_looping
    assert seen.termination is not None
    assert seen.termination.exit_code == 0


def test_crashes_before_since_belong_to_the_old_configuration() -> None:
    pods = [pod("a", backing_off(1, terminated(0, 3)))]
    assert not detect_from_pods(pods, since=T0 + timedelta(seconds=10)).crash_looping
    assert detect_from_pods(pods, since=T0 + timedelta(seconds=2)).crash_looping


def test_terminating_pods_and_other_revisions_are_left_out() -> None:
    crashing = backing_off(1, terminated(0, 3))
    deleting = pod("old", crashing, deletionTimestamp=at(5))
    other = pod("other", crashing, annotations={"llamaops.dev/config-hash": "old"})
    current = pod("new", running(4), annotations={"llamaops.dev/config-hash": "new"})
    assert not detect_from_pods([deleting]).crash_looping
    seen = detect_from_pods([deleting, other, current], annotations={"llamaops.dev/config-hash": "new"})
    assert not seen.crash_looping
    assert seen.pods == 1


def test_container_filter() -> None:
    sidecar = backing_off(1, terminated(0, 3)) | {"name": "proxy"}
    assert detect_from_pods([pod("a", running(0), sidecar)]).crash_looping
    assert not detect_from_pods([pod("a", running(0), sidecar)], containers=frozenset({"vllm"})).crash_looping


def test_failing_init_container() -> None:
    body = pod("a")
    body["status"]["initContainerStatuses"] = [
        {
            "name": "download",
            "restartCount": 2,
            "lastState": {"terminated": terminated(0, 3, message="GatedRepoError: 401 Client Error")},
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        }
    ]
    seen = detect_from_pods([body])
    assert seen.crash_looping
    assert seen.container == "download"


def test_finished_init_container_is_not_a_crash() -> None:
    body = pod("a", running(10))
    body["status"]["initContainerStatuses"] = [
        {"name": "download", "restartCount": 0, "state": {"terminated": terminated(0, 9, exit_code=0)}}
    ]
    seen = detect_from_pods([body])
    assert not seen.crash_looping
    assert seen.healthy_since == T0 + timedelta(seconds=10)


def test_container_that_cannot_start() -> None:
    status = {"name": "vllm", "restartCount": 0, "state": {"waiting": {"reason": "CreateContainerConfigError"}}}
    assert detect_from_pods([pod("a", status)]).crash_looping


def test_no_pods() -> None:
    seen = detect_from_pods([])
    assert not seen.crash_looping
    assert seen.healthy_since is None


def test_kubernetes_client_snake_case_terminations_parse() -> None:
    (state,) = containers_of(
        pod(
            "a",
            {"name": "vllm", "restartCount": 1, "lastState": {"terminated": {"exit_code": 3, "finished_at": at(1)}}},
        )
    )
    assert state.last_termination is not None
    assert state.last_termination.exit_code == 3
    assert state.last_termination.finished_at == T0 + timedelta(seconds=1)


def test_parse_time() -> None:
    assert parse_time("2026-09-01T12:00:00Z") == T0
    assert parse_time("not a time") is None
    assert parse_time(None) is None
    assert parse_time(datetime(2026, 9, 1, 12)) == T0


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(
            st.sampled_from(
                [
                    "metadata", "name", "status", "containerStatuses", "initContainerStatuses", "state",
                    "lastState", "waiting", "running", "terminated", "reason", "restartCount", "exitCode",
                    "finishedAt", "startedAt", "message", "ready", "deletionTimestamp", "annotations",
                ]
            ),
            children,
            max_size=5,
        ),
    ),
    max_leaves=30,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(pods=st.lists(json_values, max_size=4))
def test_any_pod_shape_is_read_without_raising(pods: list[Any]) -> None:
    seen = detect_from_pods(pods, since=T0)
    assert seen.source == "PodStatus"
    assert seen.restarts >= 0


# --- kube-state-metrics ---


def sample(pod: str, value: float, **labels: str) -> Sample:
    return Sample({"namespace": "ns", "pod": pod, "container": "vllm", **labels}, value, T0.timestamp() + 30)


def metrics(restarts: float = 2, finished: float = 23) -> CrashLoopMetrics:
    return CrashLoopMetrics(
        restarts=(sample("a", restarts), sample("b", 0)),
        waiting=(sample("a", 1, reason="CrashLoopBackOff"),),
        last_terminated_reason=(sample("a", 1, reason="Error"),),
        last_terminated_exit_code=(sample("a", 1),),
        last_terminated_time=(sample("a", (T0 + timedelta(seconds=finished)).timestamp()),),
    )


def test_metrics_crash_loop() -> None:
    seen = detect_from_metrics(metrics())
    assert seen.crash_looping
    assert seen.source == "Prometheus"
    assert (seen.pod, seen.container, seen.restarts) == ("a", "vllm", 2)
    assert seen.termination is not None
    assert (seen.termination.exit_code, seen.termination.reason, seen.termination.message) == (1, "Error", "")
    assert seen.last_crash == T0 + timedelta(seconds=23)
    assert seen.crashing_pods == ("a",)
    assert seen.pods == 2


def test_metrics_since_and_quiet_pods() -> None:
    assert not detect_from_metrics(metrics(), since=T0 + timedelta(seconds=30)).crash_looping
    quiet = CrashLoopMetrics(restarts=(sample("a", 0),))
    assert not detect_from_metrics(quiet).crash_looping
    assert not detect_from_metrics(CrashLoopMetrics()).crash_looping


def test_metrics_ignore_nan_and_absurd_values() -> None:
    odd = CrashLoopMetrics(
        restarts=(sample("a", math.nan), sample("b", -1)),
        last_terminated_time=(sample("a", math.inf), sample("b", 1e300)),
        last_terminated_exit_code=(sample("a", math.nan),),
    )
    assert not detect_from_metrics(odd).crash_looping


def test_combine_prefers_pod_status_and_keeps_its_message() -> None:
    from_pods = detect_from_pods([pod("a", backing_off(2, terminated(20, 23)))])
    from_metrics = detect_from_metrics(metrics())
    assert combine(from_pods, from_metrics) is from_pods
    healthy_pods = detect_from_pods([pod("a", running(30))])
    assert combine(healthy_pods, from_metrics).source == "Prometheus"
    # Prometheus down: pod status alone decides.
    assert combine(from_pods, None) is from_pods
    # Metrics see a loop pod status lost; the message comes from pod status when it has that pod.
    stale = detect_from_pods(
        [pod("a", running(30, restarts=2, last=terminated(20, 23)))], since=T0 + timedelta(hours=1)
    )
    combined = combine(stale, from_metrics)
    assert combined.source == "Prometheus"
    assert combine(None, None).crash_looping is False


def test_queries_quote_and_escape() -> None:
    queries = crash_loop_queries('we"ird', ["scout-7d9f-abc", "scout.x"], container="vllm")
    assert queries.restarts == (
        'kube_pod_container_status_restarts_total{namespace="we\\"ird",'
        'pod=~"scout-7d9f-abc|scout\\\\.x",container="vllm"}'
    )
    assert queries.waiting.endswith("== 1")
    assert "[^\\\\s\\\\S]" in crash_loop_queries("ns", []).restarts
    assert set(queries.as_dict()) == {
        "restarts",
        "waiting",
        "last_terminated_reason",
        "last_terminated_exit_code",
        "last_terminated_time",
    }


def test_a_crash_without_a_message_points_at_the_log_that_has_its_words() -> None:
    # Exit 0: the kubelet's FallbackToLogsOnError copies nothing, so the words are in the previous instance's log.
    pods = [pod("a", backing_off(1, terminated(0, 3, exit_code=0, message="")))]
    assert unexplained_crash(pods, detect_from_pods(pods)) == LogSource("a", "vllm", previous=True)
    # Not restarted yet: the current instance's log.
    now = {"name": "vllm", "ready": False, "restartCount": 0, "state": {"terminated": terminated(0, 3, 0, "")}}
    pods = [pod("b", now)]
    assert unexplained_crash(pods, detect_from_pods(pods)) == LogSource("b", "vllm", previous=False)


def test_a_crash_with_a_message_needs_no_log() -> None:
    pods = [pod("a", backing_off(1, terminated(0, 3)))]
    assert unexplained_crash(pods, detect_from_pods(pods)) is None
    healthy = [pod("a", running(0))]
    assert unexplained_crash(healthy, detect_from_pods(healthy)) is None
