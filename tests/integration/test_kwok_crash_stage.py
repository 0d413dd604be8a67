"""The sandbox's KWOK crash-loop stage on its own (no operator): restarts, the real CUDA failure message and the
kubelet's back-off, as exported by kube-state-metrics and queried from Prometheus.

What the operator does about such a loop is test_crashloop_remediation's."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from kubernetes import client

from llamaops_sandbox import crashloop
from tests.integration.conftest import Sandbox, gpu_deployment, wait_for

pytestmark = pytest.mark.integration

CASE = "embedding_oov"


def expected_message(sandbox: Sandbox) -> str:
    captures: dict[str, crashloop.Capture] = {}
    for path in sorted(sandbox.layout.cuda_fixtures.glob("*.txt")):
        captures.update(crashloop.parse_captures(path.read_text()))
    return captures[CASE].message


def crashing_deployment(name: str) -> dict[str, Any]:
    return gpu_deployment(
        name, 8, "NVIDIA-H200", image="vllm/vllm-openai:v0.8.3", annotations={"llamaops.dev/fake-crash": CASE}
    )


def test_crash_loop_restarts_with_fixture_message_and_reaches_prometheus(sandbox: Sandbox, namespace: str):
    apps, core = client.AppsV1Api(sandbox.api), client.CoreV1Api(sandbox.api)
    apps.create_namespaced_deployment(namespace, crashing_deployment("crasher"))
    backoffs: set[str] = set()

    def restarted_twice() -> Any:
        pods = core.list_namespaced_pod(namespace, label_selector="app=crasher").items
        statuses = [s for p in pods for s in (p.status.container_statuses or [])]
        for s in statuses:
            if s.state.waiting and s.state.waiting.reason == "CrashLoopBackOff":
                backoffs.update(re.findall(r"back-off \d+s", s.state.waiting.message))
        return [(p, s) for p in pods for s in (p.status.container_statuses or []) if s.restart_count >= 2]

    ((pod, status),) = wait_for("restartCount >= 2", restarted_twice, timeout=120)
    terminated = status.last_state.terminated
    assert terminated.exit_code == 1
    assert terminated.reason == "Error"
    assert terminated.message == expected_message(sandbox)
    # The kubelet's back-off: 10s after the first crash, doubled after the second.
    assert {"back-off 10s", "back-off 20s"} <= backoffs

    selector = f'namespace="{namespace}",pod="{pod.metadata.name}",container="vllm"'
    restarts = wait_for(
        "restarts in Prometheus",
        lambda: sandbox.prometheus_query(f"kube_pod_container_status_restarts_total{{{selector}}} > 0"),
        timeout=60,
        interval=1,
    )
    assert float(restarts[0]["value"][1]) >= 1
    reasons = wait_for(
        "last terminated reason in Prometheus",
        lambda: sandbox.prometheus_query(f"kube_pod_container_status_last_terminated_reason{{{selector}}} == 1"),
        timeout=60,
        interval=1,
    )
    assert [r["metric"]["reason"] for r in reasons] == ["Error"]


def test_pod_without_the_annotation_does_not_crash(sandbox: Sandbox, namespace: str):
    apps, core = client.AppsV1Api(sandbox.api), client.CoreV1Api(sandbox.api)
    deployment = crashing_deployment("steady")
    del deployment["spec"]["template"]["metadata"]["annotations"]
    apps.create_namespaced_deployment(namespace, deployment)
    wait_for(
        "deployment available", lambda: apps.read_namespaced_deployment("steady", namespace).status.available_replicas
    )
    # Longer than the crash stage's default 3s run time.
    time.sleep(5)
    (pod,) = core.list_namespaced_pod(namespace, label_selector="app=steady").items
    (status,) = pod.status.container_statuses
    assert status.restart_count == 0
    assert status.state.running is not None
