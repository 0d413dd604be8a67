"""Every look reads the pods from the index kopf hands the handlers (handlers.podindex): a status refresh writes
PodsReady from it, and no look lists pods from the API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from llama_operator.handlers import kube, podindex, reconcile
from llama_operator.render.labels import CONFIG_HASH_ANNOTATION

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "llama31-8b-h100.yaml"
MESSAGE = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."


def _served(body: dict[str, Any]) -> dict[str, Any]:
    planned = reconcile.plan(body, service_monitors=False)
    deployment = next(m for m in planned.manifests if m["kind"] == "Deployment")
    status = {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "unavailableReplicas": 1}
    return {**deployment, "metadata": {**deployment["metadata"], "generation": 1}, "status": status}


def test_a_refresh_writes_the_pods_cause_from_the_index(monkeypatch: pytest.MonkeyPatch) -> None:
    body: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    body["metadata"].update(namespace="ai", uid="u-1", generation=1)
    workload = _served(body)
    config_hash = workload["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
    scheduled = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": MESSAGE}
    pod = {
        "metadata": {"name": "llama31-8b-abc", "annotations": {CONFIG_HASH_ANNOTATION: config_hash}},
        "status": {"phase": "Pending", "conditions": [scheduled]},
    }
    patches: list[dict[str, Any]] = []
    events: list[tuple[str, str]] = []
    monkeypatch.setattr(kube, "read_llama", lambda name, namespace: body)
    monkeypatch.setattr(kube, "read_workload", lambda kind, name, namespace: workload)
    monkeypatch.setattr(kube, "read_serving_workload", lambda name, namespace: workload)
    monkeypatch.setattr(kube, "patch_llama_status", lambda name, namespace, status: patches.append(status))
    monkeypatch.setattr(kube, "post_event", lambda involved, type_, reason, message: events.append((type_, reason)))
    monkeypatch.setattr(kube, "list_pods", lambda *_: pytest.fail("pods come from the index"))
    monkeypatch.delitem(podindex.INDEX, "pods", raising=False)
    assert podindex.pods("ai", "llama31-8b") is None  # no handler has run yet

    podindex.keep({"llama_pods": {("ai", "llama31-8b"): [pod]}})
    assert reconcile.refresh("ai", "llama31-8b", child_kind="Deployment") == "Progressing"
    (status,) = patches
    pods_ready = next(c for c in status["conditions"] if c["type"] == "PodsReady")
    assert (pods_ready["status"], pods_ready["reason"]) == ("False", "Unschedulable")
    assert MESSAGE in pods_ready["message"]
    assert status["reason"] == "Unschedulable"
    assert ("Warning", "Unschedulable") in events
