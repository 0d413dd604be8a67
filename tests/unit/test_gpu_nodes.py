"""The operator's view of the GPU nodes (handlers.nodes) and its use by admission and reconcile: a product the
catalog lacks is planned from the nodes' nvidia.com/gpu.memory label, without a request listing nodes."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from llama_operator.handlers import admission, nodes
from llama_operator.handlers.reconcile import plan
from llama_operator.knowledge import load_knowledge
from llama_operator.knowledge.observed import NodeGpus, Taint, node_gpus

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "llama31-8b-l40s.yaml"
L20 = "NVIDIA-L20"
BASE = load_knowledge()


def l20(name: str, memory: int = 46068) -> NodeGpus:
    return NodeGpus(name, L20, memory, 8, (8, 9), allocatable=8)


def document(product: str) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    body["metadata"].update(namespace="serving", uid="0f0f0f0f-0000-0000-0000-000000000002", generation=1)
    body["spec"]["resources"]["gpuProduct"] = product
    return body


@pytest.fixture
def view(monkeypatch: pytest.MonkeyPatch) -> nodes.NodeView:
    fresh = nodes.NodeView()
    monkeypatch.setattr(nodes, "VIEW", fresh)
    return fresh


def test_the_knowledge_is_rebuilt_only_when_a_nodes_gpus_change(view: nodes.NodeView) -> None:
    empty = view.knowledge(BASE)
    assert empty is BASE  # nothing seen: the catalog itself
    view.put("a", l20("a"))
    first = view.knowledge(BASE)
    assert first.gpu(L20) is not None
    assert view.knowledge(BASE) is first
    view.put("a", l20("a"))  # the same labels again (a status update): nothing to rebuild
    assert view.knowledge(BASE) is first
    view.put("b", l20("b", memory=45000))
    second = view.knowledge(BASE)
    assert second is not first
    assert second.gpu(L20).memory_mib == 45000  # type: ignore[union-attr]
    view.put("b", None)  # deleted, or no longer labelled
    assert view.knowledge(BASE).gpu(L20).memory_mib == 46068  # type: ignore[union-attr]
    view.replace([])
    assert view.knowledge(BASE).gpu(L20) is None
    assert view.nodes() == ()


async def test_admission_plans_an_uncatalogued_product_from_the_view(view: nodes.NodeView) -> None:
    log = logging.getLogger("test")
    warnings: list[str] = []
    await admission.admit(warnings=warnings, logger=log, operation="CREATE", new=document(L20))
    assert [warning.split(": ")[1] for warning in warnings] == ["unknown_gpu_product"]
    view.replace([l20("l20-0"), l20("l20-1")])
    warnings.clear()
    await admission.admit(warnings=warnings, logger=log, operation="CREATE", new=document(L20))
    assert [warning.split(": ")[1] for warning in warnings] == ["gpu_product_from_node_label"]
    assert "46068 MiB on 2 node(s)" in warnings[0]


def test_reconcile_plans_with_the_view_by_default(view: nodes.NodeView) -> None:
    assert plan(document(L20), service_monitors=False, image_rewrites=()).result.plan is None
    view.replace([l20("l20-0")])
    planned = plan(document(L20), service_monitors=False, image_rewrites=())
    assert planned.result.plan is not None
    assert planned.manifests
    # A caller's own knowledge wins.
    assert plan(document(L20), service_monitors=False, image_rewrites=(), knowledge=BASE).result.plan is None


def test_the_node_watch_reads_json_not_the_clients_models() -> None:
    """A heartbeat changes every node's status: building a V1Node of each was the idle operator's busiest work."""
    from kubernetes import client, watch

    core = client.CoreV1Api(client.ApiClient())
    stream = watch.Watch()  # type: ignore[no-untyped-call]
    assert stream.get_return_type(core.list_node).__name__ == "V1Node"  # what the plain call would build
    assert not stream.get_return_type(nodes.as_json(core.list_node))
    labels = {"nvidia.com/gpu.product": L20, "nvidia.com/gpu.memory": "46068"}
    node = {
        "metadata": {"name": "gpu-1", "labels": labels},
        "spec": {"taints": [{"key": "team", "value": "ml", "effect": "NoSchedule"}], "unschedulable": True},
        "status": {"allocatable": {"nvidia.com/gpu": "8"}},
    }
    line = json.dumps({"type": "MODIFIED", "object": node})
    event = stream.unmarshal_event(line, stream.get_return_type(nodes.as_json(core.list_node)))
    assert event["object"] == node
    name, gpus = nodes._node(event["object"])
    # What the same node read through the client's models says.
    assert (name, gpus) == (
        "gpu-1",
        node_gpus("gpu-1", labels, {"nvidia.com/gpu": "8"}, [Taint("team", "ml", "NoSchedule")], True),
    )
    assert gpus is not None
    assert (gpus.memory_mib, gpus.allocatable, len(gpus.taints)) == (46068, 8, 2)  # and the cordon
