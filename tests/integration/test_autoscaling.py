"""spec.autoscaling in the sandbox: a real operator renders the ScaledObject, the real API server validates it
against KEDA's own CRD (v2.21.0's, installed by the sandbox with KEDA), its maxReplicaCount is capped by the
sandbox's GPU nodes and follows them, a crash loop (KWOK's crash stage) pauses it, and the HPA's way of scaling (the
scale subresource) moves the workload. KEDA and the HPA scaling under real load: test_autoscaling_load.py; KEDA
missing (no CRD): test_faults.py, on a private sandbox whose KEDA CRD it deletes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from llamaops_sandbox import shapes
from tests.integration.conftest import Sandbox, not_found_is_none, wait_for
from tests.integration.fake_crash import crash
from tests.integration.llamas import GROUP, PLURAL, VERSION, Llamas, condition, llama, watched_namespace
from tests.integration.operator_process import OperatorProcess

pytestmark = pytest.mark.integration

KEDA_MODULE = "github.com/kedacore/keda/v2@v2.21.0"
CRD_NAME = "scaledobjects.keda.sh"
KEDA = ("keda.sh", "v1alpha1", "scaledobjects")
H100 = "NVIDIA-H100-80GB-HBM3"
TP = 2


def keda_crd_file(sandbox: Sandbox) -> Path:
    """KEDA's ScaledObject CRD from its Go module (the module proxy, into the sandbox's module cache)."""
    go = shutil.which("go") or "/usr/local/go/bin/go"
    env = {**os.environ, "GOMODCACHE": str(sandbox.layout.gomodcache), "GOFLAGS": "-modcacherw"}
    done = subprocess.run(
        [go, "mod", "download", "-json", KEDA_MODULE], capture_output=True, text=True, env=env, timeout=600, check=True
    )
    return Path(json.loads(done.stdout)["Dir"]) / "config" / "crd" / "bases" / "keda.sh_scaledobjects.yaml"


def crd_installed(sandbox: Sandbox) -> bool:
    api = client.ApiextensionsV1Api(sandbox.api)
    return not_found_is_none(api.read_custom_resource_definition, CRD_NAME) is not None


@pytest.fixture(scope="module")
def keda_crd(sandbox: Sandbox) -> Iterator[dict[str, bool]]:
    """Whether KEDA's CRD was there before this module (``found``); once the first test has run without it, the
    second installs it (``installed``), and the module removes what it installed."""
    state = {"found": crd_installed(sandbox), "installed": False}
    try:
        yield state
    finally:
        if state["installed"]:
            client.ApiextensionsV1Api(sandbox.api).delete_custom_resource_definition(CRD_NAME)


@pytest.fixture(scope="module")
def operator(sandbox: Sandbox, llama_crd: str, keda_crd: dict[str, bool]) -> Iterator[OperatorProcess]:
    env = {"LLAMAOPS_PROMETHEUS_URL": sandbox.prometheus_url, "LLAMAOPS_PROMETHEUS_TIMEOUT": "2s"}
    with OperatorProcess(sandbox, "autoscale-*", "autoscale", env=env) as process:
        yield process


@pytest.fixture
def llamas(sandbox: Sandbox, operator: OperatorProcess, request: pytest.FixtureRequest) -> Iterator[Llamas]:
    with watched_namespace(sandbox, "autoscale", request) as llamas:
        yield llamas


def install_keda_crd(sandbox: Sandbox, keda_crd: dict[str, bool]) -> None:
    if keda_crd["found"] or keda_crd["installed"]:
        return
    sandbox.kubectl("apply", "--server-side", "-f", str(keda_crd_file(sandbox)))
    keda_crd["installed"] = True
    sandbox.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{CRD_NAME}")


def autoscaled(name: str, namespace: str, autoscaling: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """A one-replica Llama-3.1-8B on TP 2 H100s with ``autoscaling``."""
    body = llama(name, namespace)
    body["spec"]["engine"].update(maxModelLen=8192, tensorParallelSize=TP)
    body["spec"]["resources"]["gpuProduct"] = H100
    body["spec"]["autoscaling"] = autoscaling
    body["spec"].update(spec)
    return body


def scaled_object(llamas: Llamas, name: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = not_found_is_none(
        client.CustomObjectsApi(llamas.sandbox.api).get_namespaced_custom_object,
        *KEDA[:2],
        llamas.namespace,
        KEDA[2],
        name,
    )
    return found


def wait_autoscaling(llamas: Llamas, name: str, status: str, reason: str, timeout: float = 90) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        found = llamas.condition(name, "Autoscaling")
        return found if found and (found["status"], found["reason"]) == (status, reason) else None

    found: dict[str, Any] = wait_for(f"{name}: Autoscaling={status}/{reason}", reached, timeout=timeout)
    return found


def h100_room(sandbox: Sandbox) -> tuple[int, int, int]:
    """(replicas of TP GPUs, nodes, GPUs) the sandbox's schedulable, untainted H100 nodes allocate."""
    nodes = client.CoreV1Api(sandbox.api).list_node(label_selector=f"nvidia.com/gpu.product={H100}").items
    usable = [n for n in nodes if not n.spec.unschedulable and not n.spec.taints]
    gpus = [int(n.status.allocatable.get("nvidia.com/gpu", "0")) for n in usable]
    return sum(g // TP for g in gpus), len(usable), sum(gpus)


def test_the_scaled_object_is_capped_at_the_gpus_and_the_scale_subresource_moves_the_workload(
    sandbox: Sandbox, llamas: Llamas, keda_crd: dict[str, bool]
):
    install_keda_crd(sandbox, keda_crd)
    room, nodes, gpus = h100_room(sandbox)
    asked = room + 3
    body = autoscaled("capped", llamas.namespace, {"maxReplicas": asked, "scaleDownCooldown": "10m"})
    llamas.create(body)
    found = wait_autoscaling(llamas, "capped", "True", "LimitedByGPUs")
    plural = "s" if nodes != 1 else ""
    verb = "allocates" if nodes == 1 else "allocate"
    assert found["message"].startswith(
        f"maxReplicas {asked} capped at {room}: the {nodes} matching node{plural} {verb} {gpus} {H100} GPUs, "
        f"{TP} per replica"
    )
    scaled = wait_for("the ScaledObject", lambda: scaled_object(llamas, "capped"))
    spec = scaled["spec"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, room)
    assert spec["scaleTargetRef"] == {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LlamaDeployment", "name": "capped"}
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus"
    assert trigger["metadata"]["serverAddress"] == sandbox.prometheus_url
    assert trigger["metadata"]["query"].startswith(f'sum(vllm:num_requests_waiting{{namespace="{llamas.namespace}"')
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"] == {
        "stabilizationWindowSeconds": 600
    }
    owner = llamas.get("capped")["metadata"]["uid"]
    assert [r["uid"] for r in scaled["metadata"]["ownerReferences"]] == [owner]
    # What the Prometheus answers for it is a number KEDA can read (no series yet: empty, which it reads as 0).
    assert sandbox.prometheus_query(trigger["metadata"]["query"]) == []
    status = llamas.wait_phase("capped", "Running")
    assert (status["autoscaling"]["maxReplicas"], status["autoscaling"]["gpuLimit"]) == (room, room)

    # The HPA scales through the scale subresource; the operator alone writes the workload and status.replicas.
    scale = {"spec": {"replicas": 2}}
    client.CustomObjectsApi(sandbox.api).patch_namespaced_custom_object_scale(
        GROUP, VERSION, llamas.namespace, PLURAL, "capped", scale
    )
    wait_for(
        "2 replicas through the scale subresource",
        lambda: (s := llamas.status("capped")).get("replicas") == 2 and s.get("readyReplicas") == 2,
    )
    deployment = llamas.deployment("capped")
    assert deployment is not None
    assert deployment.spec.replicas == 2

    # spec.autoscaling removed: the ScaledObject and the status block go.
    llamas.patch_spec("capped", {"autoscaling": None})  # a merge patch: null removes it
    wait_for("the ScaledObject deleted", lambda: scaled_object(llamas, "capped") is None)
    wait_for("status.autoscaling removed", lambda: "autoscaling" not in llamas.status("capped"))
    assert llamas.condition("capped", "Autoscaling") is None


def test_a_crash_loop_pauses_autoscaling(sandbox: Sandbox, llamas: Llamas, keda_crd: dict[str, bool]):
    install_keda_crd(sandbox, keda_crd)
    body = autoscaled(
        "crashing",
        llamas.namespace,
        {"maxReplicas": 2},
        # Off: the crash loop stays (no remedy re-renders it), so the pause is what is looked at.
        remediation={"policy": "Off"},
        podMetadata={"annotations": crash("segfault", message="Segmentation fault (core dumped)")},
    )
    llamas.create(body)
    found = wait_autoscaling(llamas, "crashing", "False", "CrashLooping", timeout=120)
    assert found["message"].startswith("paused while the deployment crash-loops")
    scaled = wait_for(
        "the ScaledObject paused",
        lambda: (
            (s := scaled_object(llamas, "crashing"))
            and s["metadata"].get("annotations", {}).get("autoscaling.keda.sh/paused") == "true"
            and s
        ),
    )
    assert scaled["metadata"]["annotations"]["llamaops.dev/autoscaling-paused-reason"] == "CrashLooping"
    status = llamas.status("crashing")
    assert status["autoscaling"]["paused"] is True
    assert condition(status, "CrashLooping")["status"] == "True"


@pytest.fixture
def gpu_nodes(sandbox: Sandbox) -> Iterator[list[str]]:
    """KWOK nodes a test adds (of a product no other test uses); deleted afterwards."""
    names: list[str] = []
    try:
        yield names
    finally:
        for name in names:
            not_found_is_none(client.CoreV1Api(sandbox.api).delete_node, name)


def add_node(sandbox: Sandbox, names: list[str], product: str) -> str:
    gpu = shapes.GPU(product=product, count=8, memoryMiB=46068, computeMajor=8, computeMinor=9)
    (node,) = shapes.nodes(shapes.Shape(pools=[shapes.Pool(name=f"as-{uuid.uuid4().hex[:6]}", count=1, gpu=gpu)]))
    client.CoreV1Api(sandbox.api).create_node(node)
    names.append(node["metadata"]["name"])
    return str(node["metadata"]["name"])


def max_replica_count(llamas: Llamas, name: str, count: int) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        found = scaled_object(llamas, name)
        return found if found and found["spec"]["maxReplicaCount"] == count else None

    found: dict[str, Any] = wait_for(f"{name}: maxReplicaCount {count}", reached, timeout=60)
    return found


def test_the_cap_follows_the_gpu_nodes(
    sandbox: Sandbox, llamas: Llamas, keda_crd: dict[str, bool], gpu_nodes: list[str]
):
    """No event of the LlamaDeployment: the operator's node watch and its capacity follower move the cap."""
    install_keda_crd(sandbox, keda_crd)
    product = f"NVIDIA-SCALETEST-{uuid.uuid4().hex[:6].upper()}"
    add_node(sandbox, gpu_nodes, product)
    body = autoscaled("follow", llamas.namespace, {"maxReplicas": 4})
    body["spec"]["engine"]["tensorParallelSize"] = 4
    body["spec"]["resources"]["gpuProduct"] = product
    llamas.create(body)
    capped = wait_autoscaling(llamas, "follow", "True", "LimitedByGPUs")
    assert capped["message"].startswith(
        f"maxReplicas 4 capped at 2: the 1 matching node allocates 8 {product} GPUs, 4 per replica"
    )
    max_replica_count(llamas, "follow", 2)

    second = add_node(sandbox, gpu_nodes, product)
    wait_autoscaling(llamas, "follow", "True", "Active")
    max_replica_count(llamas, "follow", 4)
    assert llamas.status("follow")["autoscaling"]["gpuLimit"] == 4

    not_found_is_none(client.CoreV1Api(sandbox.api).delete_node, second)
    wait_autoscaling(llamas, "follow", "True", "LimitedByGPUs")
    max_replica_count(llamas, "follow", 2)
    # Each move of the condition's reason is an Event: Normal to Active, Warning back to LimitedByGPUs.
    moves = {(e.type, e.reason) for e in llamas.events("follow")}
    assert {("Normal", "Active"), ("Warning", "LimitedByGPUs")} <= moves
