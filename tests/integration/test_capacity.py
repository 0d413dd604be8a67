"""Capacity awareness (issue #21) through the real API server, the operator's node watch, its admission webhook and
its reconcile: warnings at admission and the Capacity condition, following nodes as they come, get cordoned and go.

The sandbox's own nodes (2 x 8 H100, 1 x 8 H200) keep their labels; the tests add fake KWOK nodes of products no
other test uses and delete them afterwards. The operator runs as in test_admission: its webhook covers only this
run's labelled namespaces, its reconcile only this run's namespaces.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from llamaops_sandbox import shapes
from tests.integration import llamas
from tests.integration.admission_run import Operator, admission_run
from tests.integration.conftest import Sandbox, not_found_is_none, wait_for

pytestmark = pytest.mark.integration

H100 = "NVIDIA-H100-80GB-HBM3"
H200 = "NVIDIA-H200"


def llama(name: str, product: str, *, replicas: int = 1, tp: int = 1, pp: int = 1) -> dict[str, Any]:
    """llamas.llama (Llama-3.1-8B) on ``product``, for `kubectl apply -n`."""
    body = llamas.llama(name, "")
    body["metadata"].pop("namespace")
    body["spec"]["engine"].update(maxModelLen=8192, tensorParallelSize=tp, pipelineParallelSize=pp)
    body["spec"]["resources"]["gpuProduct"] = product
    body["spec"]["replicas"] = replicas
    return body


@pytest.fixture(scope="module")
def operator(sandbox: Sandbox) -> Iterator[Operator]:
    with admission_run(sandbox) as operator:
        yield operator


@pytest.fixture
def namespace(operator: Operator) -> str:
    return operator.new_namespace(uuid.uuid4().hex[:6])


class FakeNodes:
    """KWOK GPU nodes a test adds; all deleted afterwards."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.core = client.CoreV1Api(sandbox.api)
        self.names: list[str] = []

    def add(self, gpu: shapes.GPU, pool: str) -> str:
        (node,) = shapes.nodes(shapes.Shape(pools=[shapes.Pool(name=pool, count=1, gpu=gpu)]))
        self.core.create_node(node)
        name: str = node["metadata"]["name"]
        self.names.append(name)
        return name

    def cordon(self, name: str, cordoned: bool = True) -> None:
        self.core.patch_node(name, {"spec": {"unschedulable": cordoned}})

    def delete(self, name: str) -> None:
        not_found_is_none(self.core.delete_node, name)


@pytest.fixture
def fake_nodes(sandbox: Sandbox) -> Iterator[FakeNodes]:
    nodes = FakeNodes(sandbox)
    try:
        yield nodes
    finally:
        for name in nodes.names:
            nodes.delete(name)


def dry_run(operator: Operator, document: dict[str, Any], namespace: str) -> str:
    result = operator.apply(document, namespace, "--dry-run=server")
    assert result.returncode == 0, result.stderr  # a warning, never a refusal
    return result.stderr


def capacity(operator: Operator, name: str, namespace: str) -> dict[str, Any] | None:
    got = operator.kubectl("get", "llamadeployment", name, "-n", namespace, "-o", "json")
    if got.returncode != 0:
        return None
    status = json.loads(got.stdout).get("status") or {}
    try:
        return llamas.condition(status, "Capacity")
    except StopIteration:
        return None


def wait_capacity(operator: Operator, name: str, namespace: str, status: str, reason: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        found = capacity(operator, name, namespace)
        return found if found and (found["status"], found["reason"]) == (status, reason) else None

    found: dict[str, Any] = wait_for(f"Capacity={status}/{reason}", reached, timeout=90)
    return found


def test_a_product_no_node_carries_is_admitted_with_a_warning_naming_what_the_nodes_carry(
    operator: Operator, namespace: str
):
    stderr = dry_run(operator, llama("not-a-gpu", "NVIDIA-NOT-A-GPU"), namespace)
    assert "Warning: spec.resources.gpuProduct: no_node_with_gpu_product: no node is labelled " in stderr
    assert "nvidia.com/gpu.product=NVIDIA-NOT-A-GPU" in stderr
    assert f"{H100} (2 nodes)" in stderr
    assert f"{H200} (1 node)" in stderr


def test_more_gpus_than_the_nodes_allocate_is_admitted_with_the_figures(operator: Operator, namespace: str):
    # The one H200 node allocates 8: two TP 8 replicas need 16.
    stderr = dry_run(operator, llama("two-h200", H200, replicas=2, tp=8), namespace)
    assert "Warning: spec.replicas: insufficient_allocatable_gpus: " in stderr
    assert "need 16 NVIDIA-H200 GPUs" in stderr
    assert "allocate 8 in all, room for 1 pod(s) of 8" in stderr
    assert "lower spec.replicas to 1" in stderr
    # A multi-node replica (a LeaderWorkerSet group of 2 pods of 8): two of them need 4 of the 2 H100 nodes.
    stderr = dry_run(operator, llama("two-groups", H100, replicas=2, tp=8, pp=2), namespace)
    assert "2 replica(s) x 16 GPUs (TP 8 x PP 2), 2 pods of 8 GPUs per replica, need 32" in stderr
    assert "room for 2 pod(s) of 8" in stderr
    # What fits says nothing.
    assert "insufficient_allocatable_gpus" not in dry_run(operator, llama("one-h200", H200, tp=8), namespace)


def test_the_capacity_condition_follows_nodes_that_come_are_cordoned_and_go(
    operator: Operator, namespace: str, fake_nodes: FakeNodes, sandbox: Sandbox
):
    """No request lists nodes: the operator's watch and its capacity follower re-judge the stored object."""
    product = f"NVIDIA-CAPTEST-{uuid.uuid4().hex[:6].upper()}"
    result = operator.apply(llama("follow", product), namespace)
    assert result.returncode == 0, result.stderr
    assert "no_node_with_gpu_product" in result.stderr
    wait_capacity(operator, "follow", namespace, "False", "NoNodeWithProduct")

    gpu = shapes.GPU(product=product, count=8, memoryMiB=46068, computeMajor=8, computeMinor=9)
    node = fake_nodes.add(gpu, f"cap-{uuid.uuid4().hex[:6]}")
    fits = wait_capacity(operator, "follow", namespace, "True", "GPUsAllocatable")
    assert "allocatable, not free" in fits["message"]

    fake_nodes.cordon(node)
    short = wait_capacity(operator, "follow", namespace, "False", "InsufficientAllocatableGPUs")
    assert f"{node}: node.kubernetes.io/unschedulable:NoSchedule not tolerated" in short["message"]

    def warned() -> bool:
        events = client.CoreV1Api(sandbox.api).list_namespaced_event(
            namespace, field_selector="involvedObject.name=follow"
        )
        return any(e.reason == "InsufficientAllocatableGPUs" and e.type == "Warning" for e in events.items)

    wait_for("a Warning Event for the transition", warned, timeout=30)

    fake_nodes.delete(node)
    wait_capacity(operator, "follow", namespace, "False", "NoNodeWithProduct")


def test_a_node_memory_label_that_differs_from_the_catalog_is_reported(
    operator: Operator, namespace: str, fake_nodes: FakeNodes
):
    # An A40 is 46,068 MiB in the catalog; this node's label says half that.
    gpu = shapes.GPU(product="NVIDIA-A40", count=2, memoryMiB=23028, computeMajor=8, computeMinor=6)
    fake_nodes.add(gpu, f"a40-{uuid.uuid4().hex[:6]}")
    document = llama("a40", "NVIDIA-A40")

    def mismatch() -> str:
        stderr = dry_run(operator, document, namespace)
        return stderr if "gpu_memory_label_mismatch" in stderr else ""

    stderr = wait_for("the node's label to reach admission", mismatch, timeout=60)
    assert "Warning: spec.resources.gpuProduct: gpu_memory_label_mismatch: " in stderr
    assert "the GPU catalog's 46068 MiB per NVIDIA-A40" in stderr
    assert "nvidia.com/gpu.memory label says 23028 MiB" in stderr
    assert operator.apply(document, namespace).returncode == 0
    found = wait_capacity(operator, "a40", namespace, "False", "GPUMemoryMismatch")
    assert "23028 MiB" in found["message"]
