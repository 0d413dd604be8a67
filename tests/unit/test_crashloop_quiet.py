"""Which pod events the crash-loop handler may skip without an API call (handlers.crashloop._quiet), and which
ones of a quiet deployment still need its status looked at: those whose pods fail for another reason."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from llama_operator.handlers import crashloop, rechecks
from llama_operator.handlers.crashloop import _quiet, essentials
from llama_operator.health import detect_from_pods
from tests.unit.pod_statuses import backing_off, pod, running, terminated


def test_pods_that_never_crashed_are_quiet() -> None:
    assert _quiet([pod("a", running(0)), pod("b", running(5, ready=False))])
    pending = {"metadata": {"name": "p"}, "status": {"phase": "Pending"}}
    assert _quiet([pending])
    assert _quiet([])


def test_any_crash_restart_or_start_failure_is_looked_at() -> None:
    assert not _quiet([pod("a", running(0)), pod("b", backing_off(2, terminated(0, 3)))])
    assert not _quiet([pod("a", running(9, restarts=1, last=terminated(0, 3)))])
    just_died = {"name": "vllm", "ready": False, "restartCount": 0, "state": {"terminated": terminated(0, 3)}}
    assert not _quiet([pod("a", just_died)])
    config_error = {
        "name": "vllm",
        "ready": False,
        "restartCount": 0,
        "state": {"waiting": {"reason": "CreateContainerConfigError"}},
    }
    assert not _quiet([pod("a", config_error)])


def test_a_crash_loop_being_handled_is_wanted_until_forgotten() -> None:
    key = ("quiet-test", "a")
    rechecks.track(key, {"remediation": {"crashLoop": {"signature": "unknown"}}}, 1)
    assert rechecks.wants(key, rechecks.CRASH_LOOP)
    assert not rechecks.wants(key, rechecks.KNOWN_GOOD)
    rechecks.forget(key)
    assert not rechecks.wants(key, rechecks.CRASH_LOOP)


def test_the_index_keeps_what_detection_reads_and_drops_the_rest() -> None:
    crashed = pod("a", backing_off(3, terminated(0, 3)), annotations={"llamaops.dev/config-hash": "h"})
    crashed["spec"] = {"containers": [{"name": "vllm", "args": ["--model", "x" * 10_000]}]}
    crashed["metadata"]["managedFields"] = [{"manager": "kubelet", "fieldsV1": {"f:status": {}}}]
    kept = essentials(crashed)
    assert "spec" not in kept
    assert "managedFields" not in kept["metadata"]
    assert detect_from_pods([kept]) == detect_from_pods([crashed])
    selected = {"llamaops.dev/config-hash": "h"}
    assert detect_from_pods([kept], annotations=selected) == detect_from_pods([crashed], annotations=selected)


def test_the_index_keeps_the_conditions_the_causes_read() -> None:
    scheduled = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes"}
    pending = {
        "metadata": {"name": "p"},
        "spec": {"nodeName": None},
        "status": {"phase": "Pending", "conditions": [scheduled]},
    }
    assert essentials(pending)["status"]["conditions"] == [scheduled]


def _unschedulable(message: str) -> dict[str, Any]:
    scheduled = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
    return {"metadata": {"name": "p"}, "status": {"phase": "Pending", "conditions": [scheduled]}}


def _pulling(reason: str) -> dict[str, Any]:
    container = {"name": "vllm", "image": "x:1", "state": {"waiting": {"reason": reason, "message": reason}}}
    scheduled = {"type": "PodScheduled", "status": "True"}
    return {
        "metadata": {"name": "p"},
        "status": {"phase": "Pending", "conditions": [scheduled], "containerStatuses": [container]},
    }


def test_a_quiet_deployment_is_looked_at_only_when_its_pods_fail_for_another_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = ("quiet-causes", "a")
    looks: list[tuple[str, str]] = []
    monkeypatch.setattr(crashloop, "refresh", lambda namespace, name: looks.append((namespace, name)))
    monkeypatch.setattr(crashloop, "evaluate", lambda *_: pytest.fail("nothing crashed: no crash-loop check"))
    monkeypatch.delitem(crashloop._index, "pods", raising=False)  # on_pod keeps its index there: put it back after
    index: dict[tuple[str, str], list[dict[str, Any]]] = {}

    def event(*pods: dict[str, Any]) -> int:
        index[key] = list(pods)
        before = len(looks)
        labels = {"llamaops.dev/deployment": key[1]}
        crashloop.on_pod(namespace=key[0], labels=labels, logger=logging.getLogger("t"), llama_pods=index)
        return len(looks) - before

    starting = {"metadata": {"name": "p"}, "status": {"phase": "Pending"}}
    ready = {
        "metadata": {"name": "p"},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }
    assert event(starting) == 0  # a pod on its way: the Deployment's events keep status current
    assert event(_unschedulable("0/3 nodes are available: 3 Insufficient nvidia.com/gpu.")) == 1
    assert event(_unschedulable("0/3 nodes are available: 3 Insufficient nvidia.com/gpu.")) == 0
    assert event(_unschedulable("0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.")) == 1
    assert event(_pulling("ErrImagePull")) == 1
    assert event(_pulling("ImagePullBackOff")) == 0  # the same failure, between two pulls
    assert event(_pulling("ErrImagePull")) == 0
    assert event(starting) == 1  # stopped failing: say so
    assert event(starting) == 0
    # All ready: one look, as the Deployment's own event may have been handled before the index caught up.
    assert event(ready) == 1
    assert event(ready) == 0
    assert event(starting) == 0  # a rollout begins: the Deployment's events say so
    assert event(ready) == 1
    assert event() == 0  # no pods left: nothing kept
    assert key not in crashloop._states
    assert looks == [key] * 6


def test_after_a_start_only_a_failure_is_worth_a_first_look(monkeypatch: pytest.MonkeyPatch) -> None:
    looks: list[str] = []
    monkeypatch.setattr(crashloop, "refresh", lambda namespace, name: looks.append(name))
    monkeypatch.delitem(crashloop._index, "pods", raising=False)
    ready = {
        "metadata": {"name": "p"},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }
    stuck = _unschedulable("0/3 nodes are available: 3 Insufficient nvidia.com/gpu.")
    index = {("restarted", "ready"): [ready], ("restarted", "stuck"): [stuck]}
    for namespace, name in index:
        crashloop.on_pod(
            namespace=namespace,
            labels={"llamaops.dev/deployment": name},
            logger=logging.getLogger("t"),
            llama_pods=index,
        )
    assert looks == ["stuck"]  # the resume's reconcile has written the ready one's status already


def test_a_look_the_api_server_refused_is_tried_again_at_the_next_event(monkeypatch: pytest.MonkeyPatch) -> None:
    key = ("quiet-causes", "b")
    calls: list[str] = []

    def refresh(namespace: str, name: str) -> None:
        calls.append(name)
        if len(calls) == 1:
            raise ApiException(status=503)

    monkeypatch.setattr(crashloop, "refresh", refresh)
    monkeypatch.delitem(crashloop._index, "pods", raising=False)
    index = {key: [_unschedulable("0/3 nodes are available: 3 Insufficient nvidia.com/gpu.")]}
    for _ in range(3):
        crashloop.on_pod(
            namespace=key[0],
            labels={"llamaops.dev/deployment": key[1]},
            logger=logging.getLogger("t"),
            llama_pods=index,
        )
    assert calls == ["b", "b"]
