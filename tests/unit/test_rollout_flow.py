"""A progressive rollout walked through the handlers with the Kubernetes edge in memory: the reconcile reads the
canary and the pods, the writer applies the stable Deployment before the canary and deletes the canary when the
rollout halts, status and Events say why (a unit test of the glue; desired/rollout.py's steps are
test_rollout.py's)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from llama_operator.desired.rollout import TRACK_LABEL, canary_name
from llama_operator.handlers import kube, reconcile
from llama_operator.handlers.reconcile import plan
from llama_operator.render.labels import CONFIG_HASH_ANNOTATION

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "llama31-8b-h100.yaml"
NAME, NAMESPACE = "llama31-8b", "ai"


def _llama(generation: int, version: str) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    body["metadata"].update(namespace=NAMESPACE, uid="u-1", generation=generation)
    body["spec"].update(replicas=4, rollout={"stabilityWindow": "30s"})
    body["spec"]["engine"]["vllmVersion"] = version
    return body


class Cluster:
    """Deployments and their pods in memory: each Deployment runs its replicas as pods of its template at once
    (``settle``); a pod of a template in ``crashing`` crash-loops."""

    def __init__(self, llama: dict[str, Any]) -> None:
        self.llama = llama
        self.deployments: dict[str, dict[str, Any]] = {}
        self.pods: list[dict[str, Any]] = []
        self.crashing: set[str] = set()
        self.applied: list[tuple[str, int]] = []
        self.deleted: list[str] = []
        self.events: list[tuple[str, str]] = []

    def read_llama(self, name: str, namespace: str) -> dict[str, Any] | None:
        return self.llama

    def read_serving_workload(self, name: str, namespace: str) -> dict[str, Any] | None:
        return self.read_workload("Deployment", name, namespace)

    def read_workload(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        found = self.deployments.get(name) if kind == "Deployment" else None
        return copy.deepcopy(found) if found else None

    def serves_service_monitors(self) -> bool:
        return False

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        if manifest["kind"] == "Deployment":
            name = manifest["metadata"]["name"]
            self.applied.append((name, manifest["spec"]["replicas"]))
            replicas = manifest["spec"]["replicas"]
            status = {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas}
            self.deployments[name] = {
                **copy.deepcopy(manifest),
                "metadata": {**manifest["metadata"], "generation": 1},
                "status": {**status, "readyReplicas": replicas, "availableReplicas": replicas},
            }
        return manifest

    def delete_workload(self, kind: str, name: str, namespace: str, owner_uid: str) -> bool:
        if kind != "Deployment":
            return False  # the writer prunes the other workload kind on every apply
        self.deleted.append(name)
        return self.deployments.pop(name, None) is not None

    def list_pods(self, namespace: str, owner: str) -> list[dict[str, Any]]:
        return copy.deepcopy(self.pods)

    def patch_llama_status(self, name: str, namespace: str, status: dict[str, Any]) -> None:
        self.llama = {**self.llama, "status": {**(self.llama.get("status") or {}), **status}}

    def post_event(self, involved: Any, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason))

    def settle(self) -> None:
        """The controllers' work: each Deployment's pods, as many as its replicas."""
        self.pods = []
        for name, deployment in self.deployments.items():
            template = deployment["spec"]["template"]
            config_hash = template["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
            for index in range(deployment["spec"]["replicas"]):
                crashing = config_hash in self.crashing
                container: dict[str, Any] = {"name": "vllm", "ready": not crashing, "restartCount": 0}
                if crashing:
                    container.update(
                        restartCount=1,
                        state={"waiting": {"reason": "CrashLoopBackOff"}},
                        lastState={"terminated": {"exitCode": 139, "finishedAt": "2026-09-01T12:00:00Z"}},
                    )
                self.pods.append(
                    {
                        "metadata": {
                            "name": f"{name}-{index}",
                            "labels": template["metadata"]["labels"],
                            "annotations": {CONFIG_HASH_ANNOTATION: config_hash},
                            "creationTimestamp": "2026-09-01T11:59:00Z",
                        },
                        "status": {
                            "phase": "Running",
                            "containerStatuses": [container],
                            # Ready long ago: any stability window has passed.
                            "conditions": [
                                {
                                    "type": "Ready",
                                    "status": "False" if crashing else "True",
                                    "lastTransitionTime": "2026-09-01T11:59:30Z",
                                }
                            ],
                        },
                    }
                )

    FAKES = (
        "read_llama",
        "read_serving_workload",
        "read_workload",
        "serves_service_monitors",
        "apply",
        "delete_workload",
        "list_pods",
        "patch_llama_status",
        "post_event",
    )


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Cluster:
    old = _llama(1, "0.31.0")
    fake = Cluster(old)
    for name in Cluster.FAKES:
        monkeypatch.setattr(kube, name, getattr(fake, name))
    stable = next(m for m in plan(old, service_monitors=False).manifests if m["kind"] == "Deployment")
    fake.apply({**stable, "metadata": {**stable["metadata"]}})
    fake.applied.clear()
    fake.settle()
    return fake


def test_a_crashing_canary_is_deleted_and_the_stable_deployment_restored(cluster: Cluster) -> None:
    old_template = copy.deepcopy(cluster.deployments[NAME]["spec"]["template"])
    cluster.llama = _llama(2, "0.32.0")
    reconcile.reapply(NAMESPACE, NAME)
    # The stable Deployment gives up a replica before the canary exists; the canary waits for the GPU.
    assert cluster.applied == [(NAME, 3), (canary_name(NAME), 0)]
    assert cluster.deployments[NAME]["spec"]["template"] == old_template
    assert cluster.llama["status"]["rollout"]["phase"] == "Canary"
    assert ("Normal", "RolloutStarted") in cluster.events

    cluster.settle()  # the stable pod is gone
    reconcile.reapply(NAMESPACE, NAME)
    assert cluster.applied[-1] == (canary_name(NAME), 1)
    canary = cluster.deployments[canary_name(NAME)]
    assert canary["spec"]["selector"]["matchLabels"][TRACK_LABEL] == "canary"
    new_hash = canary["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]

    cluster.crashing.add(new_hash)
    cluster.settle()  # the canary pod crashes
    reconcile.reapply(NAMESPACE, NAME)
    assert cluster.deleted == [canary_name(NAME)]
    rollout = cluster.llama["status"]["rollout"]
    assert (rollout["phase"], rollout["reason"]) == ("Halted", "CrashLoop")
    assert ("Warning", "RolloutHalted") in cluster.events

    cluster.settle()  # the canary's pod is gone with it
    reconcile.reapply(NAMESPACE, NAME)
    assert cluster.applied[-1] == (NAME, 4)
    assert cluster.deployments[NAME]["spec"]["template"] == old_template
    assert canary_name(NAME) not in cluster.deployments
    assert cluster.llama["status"]["rollout"]["newReplicas"] == 0


def test_a_healthy_canary_is_promoted_and_the_rollout_completes(cluster: Cluster) -> None:
    cluster.llama = _llama(2, "0.32.0")
    for _ in range(2):
        reconcile.reapply(NAMESPACE, NAME)
        cluster.settle()
    # Ready for the window: promoted, the rest follow on the stable Deployment, the canary kept meanwhile.
    reconcile.reapply(NAMESPACE, NAME)
    assert cluster.llama["status"]["rollout"]["phase"] == "Promoting"
    new_hash = cluster.deployments[canary_name(NAME)]["spec"]["template"]["metadata"]["annotations"]
    stable = cluster.deployments[NAME]
    assert stable["spec"]["template"]["metadata"]["annotations"] == new_hash
    assert stable["spec"]["replicas"] == 3
    cluster.settle()
    reconcile.reapply(NAMESPACE, NAME)  # the stable Deployment has rolled: the canary goes
    assert cluster.deleted == [canary_name(NAME)]
    cluster.settle()
    reconcile.reapply(NAMESPACE, NAME)
    assert cluster.applied[-1] == (NAME, 4)
    assert cluster.llama["status"]["rollout"]["phase"] == "Completed"
    reasons = [reason for _, reason in cluster.events]
    # The in-memory Deployment rolls its three pods at once: the last step is announced with the rest.
    assert [r for r in reasons if r.startswith("Rollout") and r != "RolloutComplete"] == [
        "RolloutStarted",
        "RolloutPromoted",
        "RolloutStep",
        "RolloutCompleted",
    ]
