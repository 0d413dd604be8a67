"""Fake GPU nodes: the scheduler places GPU pods by nvidia.com/gpu and GFD labels, and KWOK makes them Ready."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from tests.integration.conftest import Sandbox, gpu_deployment, wait_for

pytestmark = pytest.mark.integration

H100 = "NVIDIA-H100-80GB-HBM3"


def test_fake_nodes_have_gpu_capacity_and_gfd_labels(sandbox: Sandbox):
    nodes = client.CoreV1Api(sandbox.api).list_node().items
    by_product: dict[str, int] = {}
    for node in nodes:
        labels = node.metadata.labels
        assert node.status.allocatable["nvidia.com/gpu"] == labels["nvidia.com/gpu.count"] == "8"
        assert int(labels["nvidia.com/gpu.memory"]) > 80_000
        by_product[labels["nvidia.com/gpu.product"]] = by_product.get(labels["nvidia.com/gpu.product"], 0) + 1
    assert by_product == {H100: 2, "NVIDIA-H200": 1}


def test_eight_gpu_pod_lands_on_an_h100_node_and_becomes_ready(sandbox: Sandbox, namespace: str):
    apps, core = client.AppsV1Api(sandbox.api), client.CoreV1Api(sandbox.api)
    apps.create_namespaced_deployment(namespace, gpu_deployment("fits", 8, H100))

    wait_for(
        "deployment available", lambda: apps.read_namespaced_deployment("fits", namespace).status.available_replicas
    )
    (pod,) = core.list_namespaced_pod(namespace, label_selector="app=fits").items
    node = core.read_node(pod.spec.node_name)
    assert node.metadata.labels["nvidia.com/gpu.product"] == H100
    assert pod.status.phase == "Running"
    assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "True"


def test_nine_gpu_pod_stays_pending_unschedulable(sandbox: Sandbox, namespace: str):
    apps, core = client.AppsV1Api(sandbox.api), client.CoreV1Api(sandbox.api)
    apps.create_namespaced_deployment(namespace, gpu_deployment("too-big", 9, H100))

    def unschedulable() -> Any:
        pods = core.list_namespaced_pod(namespace, label_selector="app=too-big").items
        conditions = [c for p in pods for c in (p.status.conditions or []) if c.type == "PodScheduled"]
        return [c for c in conditions if c.status == "False" and c.reason == "Unschedulable"]

    (condition,) = wait_for("PodScheduled=False/Unschedulable", unschedulable)
    assert "nvidia.com/gpu" in condition.message
    (pod,) = core.list_namespaced_pod(namespace, label_selector="app=too-big").items
    assert pod.status.phase == "Pending"
    assert pod.spec.node_name is None
