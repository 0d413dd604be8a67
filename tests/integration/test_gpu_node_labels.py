"""A GPU product the catalog lacks is planned from its nodes' nvidia.com/gpu.memory label (handlers/nodes.py), through
the real API server, the operator's node watch and its admission webhook.

The module adds its own fake KWOK node of an uncatalogued product (NVIDIA-L20, a 48 GB Ada board; GFD's labels as
on a real node, 46068 MiB) and removes it at the end; the sandbox's own nodes keep their labels. The operator runs
as in test_admission: its webhook covers only this run's labelled namespaces.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from llama_operator.knowledge import load_knowledge
from llamaops_sandbox import shapes
from tests.integration.admission_run import DENIED, Operator, admission_run
from tests.integration.conftest import Sandbox, not_found_is_none, wait_for

pytestmark = pytest.mark.integration

L20 = shapes.GPU(product="NVIDIA-L20", count=8, memoryMiB=46068, family="ada-lovelace", computeMajor=8, computeMinor=9)
NOT_ON_ANY_NODE = "NVIDIA-L2"
POOL_LABEL = "llamaops.dev/sandbox-pool"


def llama(name: str, model: str, product: str) -> dict[str, Any]:
    return {
        "apiVersion": "llamaops.dev/v1alpha1",
        "kind": "LlamaDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"name": model},
            "engine": {"vllmVersion": "0.32.0", "maxModelLen": 8192},
            "resources": {"gpuProduct": product},
        },
    }


@pytest.fixture(scope="module")
def l20_node(sandbox: Sandbox) -> Iterator[str]:
    """One fake 8 x NVIDIA-L20 node, Ready; deleted after the module."""
    pool = f"l20-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(sandbox.api)
    (node,) = shapes.nodes(shapes.Shape(pools=[shapes.Pool(name=pool, count=1, gpu=L20)]))
    core.create_node(node)
    name = node["metadata"]["name"]

    def ready() -> bool:
        got = core.read_node(name)
        return any(c.type == "Ready" and c.status == "True" for c in got.status.conditions or [])

    try:
        wait_for(f"node {name} Ready", ready, timeout=60)
        yield name
    finally:
        not_found_is_none(core.delete_node, name)


@pytest.fixture(scope="module")
def operator(sandbox: Sandbox, l20_node: str) -> Iterator[Operator]:
    with admission_run(sandbox) as operator:
        yield operator


@pytest.fixture
def namespace(operator: Operator) -> str:
    return operator.new_namespace(uuid.uuid4().hex[:6])


def test_the_node_carries_gfd_labels_of_a_product_the_catalog_lacks(sandbox: Sandbox, l20_node: str):
    labels = client.CoreV1Api(sandbox.api).read_node(l20_node).metadata.labels
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-L20"
    assert labels["nvidia.com/gpu.memory"] == "46068"
    assert load_knowledge().gpu("NVIDIA-L20") is None


def test_admission_plans_the_product_from_the_node_label(operator: Operator, namespace: str):
    document = llama("l20-8b", "meta-llama/Llama-3.1-8B-Instruct", "NVIDIA-L20")

    def planned() -> str:
        result = operator.apply(document, namespace, "--dry-run=server")
        assert result.returncode == 0, result.stderr
        return result.stderr if "gpu_product_from_node_label" in result.stderr else ""

    warning = wait_for("a warning naming the node label", planned, timeout=60)
    assert "Warning: spec.resources.gpuProduct: gpu_product_from_node_label:" in warning
    assert "46068 MiB on 1 node(s)" in warning
    assert "unknown_gpu_product" not in warning


def test_a_model_too_large_for_the_labelled_memory_is_refused(operator: Operator, namespace: str):
    # 70B parameters in bfloat16 on one 45 GiB GPU: refused only because the memory is now known.
    result = operator.apply(llama("l20-70b", "meta-llama/Llama-3.1-70B-Instruct", "NVIDIA-L20"), namespace)
    assert result.returncode != 0, result.stdout
    assert DENIED in result.stderr
    assert "weights_exceed_gpu_memory" in result.stderr
    # A product on no node keeps today's behaviour: a warning, no memory plan, no refusal.
    unknown = operator.apply(
        llama("l2-70b", "meta-llama/Llama-3.1-70B-Instruct", NOT_ON_ANY_NODE), namespace, "--dry-run=server"
    )
    assert unknown.returncode == 0, unknown.stderr
    assert "unknown_gpu_product" in unknown.stderr


def test_the_reconciled_status_shows_the_plan_from_the_label(operator: Operator, namespace: str):
    result = operator.apply(llama("l20-status", "meta-llama/Llama-3.1-8B-Instruct", "NVIDIA-L20"), namespace)
    assert result.returncode == 0, result.stderr

    def plan() -> dict[str, Any] | None:
        got = operator.kubectl("get", "llamadeployment", "l20-status", "-n", namespace, "-o", "json")
        if got.returncode != 0:
            return None
        found: dict[str, Any] | None = (json.loads(got.stdout).get("status") or {}).get("plan")
        return found

    shown = wait_for("status.plan", plan, timeout=90)
    assert shown["gpuMemoryGib"] == pytest.approx(46068 / 1024, abs=0.01)


def test_a_node_that_comes_and_goes_is_followed_by_the_watch(sandbox: Sandbox, operator: Operator, namespace: str):
    """No request lists nodes: the operator's watch sees the node appear and disappear."""
    gpu = shapes.GPU(product="NVIDIA-RTX-5880-Ada-Generation", count=4, memoryMiB=46068, computeMajor=8, computeMinor=9)
    (node,) = shapes.nodes(shapes.Shape(pools=[shapes.Pool(name=f"rtx-{uuid.uuid4().hex[:6]}", count=1, gpu=gpu)]))
    document = llama("rtx-8b", "meta-llama/Llama-3.1-8B-Instruct", gpu.product)
    core = client.CoreV1Api(sandbox.api)

    def code() -> str:
        result = operator.apply(document, namespace, "--dry-run=server")
        assert result.returncode == 0, result.stderr
        found = [c for c in ("gpu_product_from_node_label", "unknown_gpu_product") if c in result.stderr]
        return found[0] if found else ""

    assert code() == "unknown_gpu_product"
    core.create_node(node)
    try:
        wait_for("the new node's label to plan the product", lambda: code() == "gpu_product_from_node_label")
        assert "on 1 node(s), 4 GPUs per node" in operator.apply(document, namespace, "--dry-run=server").stderr
    finally:
        core.delete_node(node["metadata"]["name"])
    wait_for("the deleted node to be forgotten", lambda: code() == "unknown_gpu_product")
