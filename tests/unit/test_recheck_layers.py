"""One crash-loop recheck walked from detection to the applied child, with the Kubernetes edge replaced by
in-memory fakes (a unit test of the flow). sys.setprofile records which llama_operator layer each call runs in:
the look goes down the layers once -- the edge reads, health checks, desired decides (planning and render below
it), the writer writes -- and never climbs back up (no second read, no second plan)."""

from __future__ import annotations

import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

import pytest

from llama_operator.api import API_VERSION, KIND
from llama_operator.handlers import crashloop, kube
from llama_operator.handlers.reconcile import plan
from llama_operator.render.labels import CONFIG_HASH_ANNOTATION

NAMESPACE, NAME = "ai", "scout"
MESSAGE = 'IndexKernel.cu:111: ... Assertion `... "index out of bounds"` failed.'
EDGE = "handlers"  # the kopf side: reads and the glue between the steps
WRITER = "llama_operator.handlers.writer"


def _llama() -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": NAME, "namespace": NAMESPACE, "uid": "u-1", "generation": 2},
        "spec": {
            "model": {"name": "meta-llama/Llama-4-Scout-17B-16E-Instruct"},
            "engine": {"vllmVersion": "0.8.3", "maxModelLen": 12000, "tensorParallelSize": 8, "patched": False},
            "resources": {"gpuProduct": "NVIDIA-H100-80GB-HBM3"},
            "remediation": {"policy": "Auto", "maxAttempts": 3, "window": "1h"},
            "validation": {"knownIssues": "Warn"},
        },
    }


def _served(llama: dict[str, Any]) -> dict[str, Any]:
    """The Deployment the last reconcile applied, as the API server returns it."""
    planned = plan(llama, service_monitors=False)
    assert planned.result.valid, planned.result.errors
    deployment = next(m for m in planned.manifests if m["kind"] == "Deployment")
    return {
        **deployment,
        "metadata": {**deployment["metadata"], "generation": 1},
        "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1},
    }


def _crashing_pod(config_hash: str, now: datetime) -> dict[str, Any]:
    def at(seconds_ago: int) -> str:
        return (now - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")

    last = {"exitCode": 1, "reason": "Error", "message": MESSAGE, "startedAt": at(60), "finishedAt": at(30)}
    return {
        "metadata": {
            "name": f"{NAME}-abc",
            "namespace": NAMESPACE,
            "annotations": {CONFIG_HASH_ANNOTATION: config_hash},
        },
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {
                    "name": "vllm",
                    "ready": False,
                    "restartCount": 3,
                    "lastState": {"terminated": last},
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                }
            ],
        },
    }


class Cluster:
    """The kube edge in memory: what was read, applied, patched and posted."""

    def __init__(self, llama: dict[str, Any], workload: dict[str, Any]) -> None:
        self.llama, self.workload = llama, workload
        self.calls: Counter[str] = Counter()
        self.applied: list[dict[str, Any]] = []
        self.patches: list[dict[str, Any]] = []
        self.events: list[tuple[str, str]] = []

    def read_llama(self, name: str, namespace: str) -> dict[str, Any] | None:
        self.calls["read_llama"] += 1
        return self.llama

    def read_serving_workload(self, name: str, namespace: str) -> dict[str, Any] | None:
        self.calls["read_workload"] += 1
        return self.workload

    def read_workload(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        self.calls["read_workload"] += 1
        return self.workload if kind == self.workload["kind"] else None

    def serves_service_monitors(self) -> bool:
        return False

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.applied.append(manifest)
        return manifest

    def delete_workload(self, kind: str, name: str, namespace: str, owner_uid: str) -> bool:
        return False

    def patch_llama_status(self, name: str, namespace: str, status: dict[str, Any]) -> None:
        self.patches.append(status)
        self.llama = {**self.llama, "status": {**(self.llama.get("status") or {}), **status}}

    def post_event(self, involved: Any, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason))

    FAKES = (
        "read_llama",
        "read_serving_workload",
        "read_deployment",
        "read_workload",
        "serves_service_monitors",
        "apply",
        "delete_workload",
        "patch_llama_status",
        "post_event",
    )


def _layer(module: str) -> str | None:
    if module == WRITER:
        return "writer"
    layer = module.split(".")[1]
    if layer in ("api", "knowledge"):
        return None  # data models and catalogs, read by every layer
    return "planning/render" if layer in ("planning", "render") else layer


class Walk:
    """Per call of a llama_operator function (or a fake of the kube edge): the layer the look is in, which is that of
    the outermost llama_operator frame below the edge (what the edge handed the work to). The edge's own glue is not
    a step; its calls to the kube edge are (reads), unless the writer makes them."""

    def __init__(self, fakes: set[Any]) -> None:
        self.fakes = fakes
        self.layers: list[str] = []
        self.validations = 0

    def __call__(self, frame: FrameType, event: str, _arg: Any) -> None:
        if event != "call":
            return
        module = frame.f_globals.get("__name__", "")
        fake = frame.f_code in self.fakes
        if not (fake or module.startswith("llama_operator.")):
            return
        if frame.f_code.co_name in ("validate", "validate_resource") and module == "llama_operator.planning.validate":
            self.validations += 1
        chain: list[str] = []
        caller: FrameType | None = frame
        while caller is not None:
            name = caller.f_globals.get("__name__", "")
            if name.startswith("llama_operator."):
                chain.append(name)
            caller = caller.f_back
        below_edge = [m for m in reversed(chain) if m.split(".")[1] != EDGE or m == WRITER]
        layer = _layer(below_edge[0]) if below_edge else (EDGE if fake else None)
        if layer is not None and (not self.layers or self.layers[-1] != layer):
            self.layers.append(layer)


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Cluster:
    llama = _llama()
    workload = _served(llama)
    fake = Cluster(llama, workload)
    for name in Cluster.FAKES:
        target = "read_serving_workload" if name == "read_deployment" else name
        monkeypatch.setattr(kube, name, getattr(fake, target))
    template = workload["spec"]["template"]["metadata"]["annotations"]
    pod = _crashing_pod(template[CONFIG_HASH_ANNOTATION], datetime.now(UTC))
    monkeypatch.setitem(crashloop._index, "pods", {(NAMESPACE, NAME): [pod]})
    return fake


def test_a_recheck_goes_down_the_layers_once_and_applies_the_remedy(cluster: Cluster) -> None:
    walk = Walk({getattr(Cluster, name).__code__ for name in Cluster.FAKES if hasattr(Cluster, name)})
    sys.setprofile(walk)
    try:
        crashloop.recheck(NAMESPACE, NAME)
    finally:
        sys.setprofile(None)

    # The remedy reached the cluster: the Deployment runs the patched image, status says why, Events were posted.
    deployment = next(m for m in cluster.applied if m["kind"] == "Deployment")
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    served = cluster.workload["spec"]["template"]["spec"]["containers"][0]["image"]
    assert not served.endswith("-llamaops")
    assert image.endswith("-llamaops")
    assert cluster.llama["status"]["overrides"]["action"] == "SwitchToPatchedImage"
    assert ("Warning", "Remediated") in cluster.events
    assert len(cluster.patches) == 1

    # One read and one plan of the object: the user's spec validated once, the overridden spec once.
    assert cluster.calls["read_llama"] == 1
    assert walk.validations == 2
    # Down once: the edge reads, health checks, desired decides (planning/render below it), the writer writes.
    assert walk.layers == [EDGE, "health", "desired", "writer"], walk.layers
