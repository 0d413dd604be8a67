"""Pods that cannot serve are explained on the LlamaDeployment: the scheduler's and the kubelet's reasons in the
PodsReady condition (and, while a remediation waits, in CrashLooping), in status.reason and the Reason column of
`kubectl get llama`, and in an Event for each transition. A real operator process, the sandbox's scheduler and
fake GPU nodes, and KWOK's crash and image-pull stages (e2e/kwok).

The image-pull stage is read by KWOK when it starts: a shared sandbox started before the stage existed lacks it,
and that test then runs on a private sandbox of its own (as test_faults does).
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from llamaops_sandbox import cluster
from tests.integration.conftest import Sandbox, gpu_deployment, install_crd, make_namespace, wait_for
from tests.integration.fake_crash import UPSTREAM_083, crash
from tests.integration.llamas import Llamas, condition, example, llama, watched_namespace
from tests.integration.operator_process import OperatorProcess

pytestmark = pytest.mark.integration

H100, H200 = "NVIDIA-H100-80GB-HBM3", "NVIDIA-H200"
# In the GPU catalog, on no node of the sandbox.
ABSENT = "NVIDIA-B200"
# Within seconds of the pod's PodScheduled=False (the operator is one pod event and one status write away).
PROMPT_S = 10.0
PULL_FAILURE = {"llamaops.dev/fake-image-pull": "not-found", "llamaops.dev/fake-image-pull-after": "1s"}


@pytest.fixture(scope="module")
def operator(sandbox: Sandbox, llama_crd: str) -> Iterator[OperatorProcess]:
    with OperatorProcess(sandbox, "causes-*", "causes") as process:
        yield process


@pytest.fixture
def llamas(sandbox: Sandbox, operator: OperatorProcess, request: pytest.FixtureRequest) -> Iterator[Llamas]:
    with watched_namespace(sandbox, "causes", request) as llamas:
        yield llamas


def pods_ready(llamas: Llamas, name: str, reason: str, timeout: float = 90) -> dict[str, Any]:
    """The PodsReady condition once its reason is ``reason``."""
    found: dict[str, Any] = wait_for(
        f"PodsReady reason {reason}",
        lambda: (c := llamas.condition(name, "PodsReady")) is not None and c["reason"] == reason and c,
        timeout=timeout,
    )
    return found


def pod_condition(llamas: Llamas, name: str, type_: str, status: str) -> client.V1PodCondition | None:
    for pod in llamas.pods(name):
        for found in pod.status.conditions or []:
            if found.type == type_ and found.status == status:
                return found
    return None


def events(llamas: Llamas, name: str) -> set[tuple[str, str]]:
    return {(e.type, e.reason) for e in llamas.events(name)}


def reason_column(llamas: Llamas, name: str) -> str:
    """The Reason column of `kubectl get llama`, as a user reads it."""
    header, row = llamas.sandbox.kubectl("get", "llama", name, "-n", llamas.namespace).splitlines()[:2]
    # Columns are aligned under their headers (and "MAX LEN" has a space): cut the row where REASON's header is.
    start = header.index("REASON")
    return row[start : header.index("AGE", start)].strip()


def test_a_gpu_product_no_node_has_is_unschedulable_with_the_schedulers_message(llamas: Llamas):
    body = llama("nowhere", llamas.namespace)
    body["spec"]["resources"]["gpuProduct"] = ABSENT
    llamas.create(body)

    unschedulable = wait_for(
        "the pod's PodScheduled=False", lambda: pod_condition(llamas, "nowhere", "PodScheduled", "False")
    )
    seen = time.monotonic()
    found = pods_ready(llamas, "nowhere", "Unschedulable", timeout=PROMPT_S)
    assert time.monotonic() - seen < PROMPT_S
    assert found["status"] == "False"
    assert unschedulable.message in found["message"]  # the scheduler's own words
    assert "didn't match Pod's node affinity/selector" in found["message"]
    status = llamas.status("nowhere")
    assert status["reason"] == "Unschedulable"
    assert condition(status, "Available")["message"].endswith("PodsReady: Unschedulable")
    assert reason_column(llamas, "nowhere") == "Unschedulable"
    assert ("Warning", "Unschedulable") in wait_for(
        "an Unschedulable Event", lambda: (e := events(llamas, "nowhere")) and ("Warning", "Unschedulable") in e and e
    )


def test_gpus_all_taken_are_unschedulable_until_they_free_up(sandbox: Sandbox, llamas: Llamas):
    apps = client.AppsV1Api(sandbox.api)
    # Every GPU of the one H200 node, taken by someone else.
    apps.create_namespaced_deployment(llamas.namespace, gpu_deployment("other-team", 8, H200))
    wait_for(
        "the other team's pod ready",
        lambda: apps.read_namespaced_deployment("other-team", llamas.namespace).status.available_replicas,
    )
    body = llama("waits", llamas.namespace)
    body["spec"]["resources"]["gpuProduct"] = H200
    llamas.create(body)

    found = pods_ready(llamas, "waits", "Unschedulable")
    assert "Insufficient nvidia.com/gpu" in found["message"]
    assert llamas.status("waits")["reason"] == "Unschedulable"
    assert reason_column(llamas, "waits") == "Unschedulable"

    apps.delete_namespaced_deployment("other-team", llamas.namespace)
    status = llamas.wait_phase("waits", "Running", timeout=120)
    assert condition(status, "PodsReady")["status"] == "True"
    assert status["reason"] == ""
    seen = wait_for(
        "a PodsReady=True Event", lambda: (e := events(llamas, "waits")) and ("Normal", "PodsReady") in e and e
    )
    assert ("Warning", "Unschedulable") in seen


def image_pull_stage_loaded(sandbox: Sandbox) -> bool:
    """Whether the sandbox's KWOK runs the image-pull stage (a bare pod annotated for it fails its pull rather than
    becoming ready)."""
    core = client.CoreV1Api(sandbox.api)
    namespace = make_namespace(sandbox, "pull-probe")
    try:
        pod = {
            "metadata": {"name": "probe", "annotations": PULL_FAILURE},
            "spec": {
                "nodeSelector": {"nvidia.com/gpu.product": H100},
                "containers": [{"name": "c", "image": f"registry.invalid/probe:{uuid.uuid4().hex[:6]}"}],
            },
        }
        core.create_namespaced_pod(namespace, pod)

        def outcome() -> str | None:
            status = core.read_namespaced_pod("probe", namespace).status
            for container in status.container_statuses or []:
                if container.state.waiting and container.state.waiting.reason == "ErrImagePull":
                    return "stage"
            ready = any(c.type == "Ready" and c.status == "True" for c in status.conditions or [])
            return "no stage" if ready else None

        return bool(wait_for("the probe pod's pull", outcome, timeout=60) == "stage")
    finally:
        core.delete_namespace(namespace)


@pytest.fixture(scope="module")
def pulling(sandbox: Sandbox, operator: OperatorProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox whose KWOK runs the image-pull stage, with an operator watching causes-*: the shared one when it
    does, otherwise a private one (one H100 node)."""
    if image_pull_stage_loaded(sandbox):
        yield sandbox
        return
    print("[causes] the shared sandbox's KWOK predates the image-pull stage: using a private one", file=sys.stderr)
    root = tmp_path_factory.mktemp("causes-cache")
    layout = cluster.private_layout(root)
    shape = root / "shape.yaml"
    gpu = {"product": H100, "count": 8, "memoryMiB": 81559, "family": "hopper"}
    shape.write_text(yaml.safe_dump({"pools": [{"name": "pull", "count": 1, "gpu": gpu}]}))
    try:
        state, _ = cluster.up(layout, shape, lambda m: print(f"[causes] {m}", file=sys.stderr))
        api = config.new_client_from_config(config_file=str(layout.kubeconfig))
        try:
            private = Sandbox(layout, state, api)
            install_crd(private)
            with OperatorProcess(private, "causes-*", "causes-private"):
                yield private
        finally:
            api.close()
    finally:
        cluster.down(layout)


def test_an_image_that_cannot_be_pulled_carries_the_kubelets_message(pulling: Sandbox, request: pytest.FixtureRequest):
    with watched_namespace(pulling, "causes", request) as llamas:
        body = llama("typo", llamas.namespace)
        body["spec"]["podMetadata"] = {"annotations": PULL_FAILURE}
        llamas.create(body)

        found = pods_ready(llamas, "typo", "ImagePullFailed")
        image = llamas.status("typo")["effective"]["image"]
        assert f'failed to pull and unpack image "{image}"' in found["message"]
        assert ": not found" in found["message"]
        assert llamas.status("typo")["reason"] == "ImagePullFailed"
        assert reason_column(llamas, "typo") == "ImagePullFailed"
        wait_for(
            "an ImagePullFailed Event",
            lambda: ("Warning", "ImagePullFailed") in events(llamas, "typo"),
        )
        # The kubelet goes on between ErrImagePull and ImagePullBackOff: the same cause, no new Event.
        wait_for(
            "the pod in ImagePullBackOff",
            lambda: any(
                s.state.waiting and s.state.waiting.reason == "ImagePullBackOff"
                for p in llamas.pods("typo")
                for s in p.status.container_statuses or []
            ),
            timeout=30,
        )
        pulled = [e for e in llamas.events("typo") if e.reason == "ImagePullFailed"]
        assert [(e.type, e.count or 1) for e in pulled] == [("Warning", 1)]

        # A spec whose pods can pull: the condition clears.
        llamas.patch_spec("typo", {"podMetadata": {"annotations": dict.fromkeys(PULL_FAILURE)}})
        status = llamas.wait_phase("typo", "Running", timeout=120)
        assert condition(status, "PodsReady")["status"] == "True"


def test_a_remediation_waiting_for_gpus_says_so(sandbox: Sandbox, llamas: Llamas):
    body = example("llama4-scout.yaml", llamas.namespace)
    body["spec"]["engine"].update({"vllmVersion": "0.8.3", "patched": False, "maxModelLen": 12000})
    body["spec"]["resources"]["gpuProduct"] = H200  # the one H200 node: all 8 GPUs
    body["spec"]["validation"] = {"knownIssues": "Warn"}
    # Crashes like vllm#16274 while the upstream 0.8.3 image runs, 15 s after it starts.
    annotations = {**crash("block_table_gather", when=UPSTREAM_083), "llamaops.dev/fake-crash-after": "15s"}
    body["spec"]["podMetadata"] = {"annotations": annotations}
    llamas.create(body)

    (pod,) = wait_for(
        "the crashing pod bound to a node",
        lambda: [p for p in llamas.pods("llama4-scout") if p.spec.node_name],
    )
    # Before it crashes, another workload takes the GPUs it will free: a pod bound to the node itself, which the
    # scheduler counts but does not place. The remediation's new pod then finds no free GPU.
    core = client.CoreV1Api(sandbox.api)
    taker = {
        "metadata": {"name": "gpu-taker"},
        "spec": {
            "nodeName": pod.spec.node_name,
            "containers": [{"name": "c", "image": "busybox", "resources": {"limits": {"nvidia.com/gpu": "8"}}}],
        },
    }
    core.create_namespaced_pod(llamas.namespace, taker)

    waiting = wait_for(
        "CrashLooping=True/RemediationWaitingForCapacity",
        lambda: (
            (c := llamas.condition("llama4-scout", "CrashLooping")) is not None
            and c["reason"] == "RemediationWaitingForCapacity"
            and c
        ),
        timeout=120,
    )
    assert waiting["status"] == "True"
    assert waiting["message"].startswith("SwitchToPatchedImage is applied after cuda_device_assert_index_oob")
    assert "Insufficient nvidia.com/gpu" in waiting["message"]
    status = llamas.status("llama4-scout")
    assert [r["result"] for r in status["remediations"]] == ["Pending"]
    assert status["reason"] == "RemediationWaitingForCapacity"
    assert reason_column(llamas, "llama4-scout") == "RemediationWaitingForCapacity"
    assert condition(status, "PodsReady")["reason"] == "Unschedulable"
    wait_for(
        "a RemediationWaitingForCapacity Event",
        lambda: ("Warning", "RemediationWaitingForCapacity") in events(llamas, "llama4-scout"),
    )

    # The GPUs free up: the patched pod is scheduled, serves, and the loop is over.
    core.delete_namespaced_pod("gpu-taker", llamas.namespace, grace_period_seconds=0)
    status = wait_for(
        "recovered",
        lambda: (
            (s := llamas.status("llama4-scout"))
            and condition(s, "CrashLooping")["status"] == "False"
            and s.get("phase") == "Running"
            and s
        ),
        timeout=180,
    )
    assert status["remediations"][0]["result"] == "Recovered"
    assert condition(status, "PodsReady")["status"] == "True"
