"""A LeaderWorkerSet's status aggregated into the LlamaDeployment's (pure)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from llama_operator.planning import validate
from llama_operator.render.status import Rollout, compute
from tests.unit.workloads import rolled_out_deployment

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
VALID = validate(yaml.safe_load((EXAMPLES / "llama4-maverick-bf16-h100-multinode.yaml").read_text()))


def lws(
    replicas: int = 1,
    generation: int = 1,
    status: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "metadata": {"name": "m", "generation": generation},
        "spec": {"replicas": replicas, "leaderWorkerTemplate": {"size": 2}},
        "status": status or {},
    }


# As LWS v0.9.0 wrote it in the sandbox once both pods of the group were Ready.
ALL_READY = {
    "conditions": [
        {"type": "Progressing", "status": "False", "reason": "GroupsProgressing", "observedGeneration": 1},
        {"type": "Available", "status": "True", "reason": "AllGroupsReady", "observedGeneration": 1},
    ],
    "hpaPodSelector": "leaderworkerset.sigs.k8s.io/name=m,leaderworkerset.sigs.k8s.io/worker-index=0",
    "observedGeneration": 1,
    "readyReplicas": 1,
    "replicas": 1,
    "updatedReplicas": 1,
}


def phase_of(workload: dict[str, Any]) -> tuple[str, dict[str, str]]:
    doc = compute(
        generation=1,
        result=VALID,
        rollout=Rollout.from_workload(workload),
        old={},
        now="2026-11-22T00:00:00Z",
        endpoint="e",
        selector="s",
    )
    return doc["phase"], {c["type"]: c["status"] for c in doc["conditions"]}


def test_groups_are_the_replicas():
    rollout = Rollout.from_workload(lws(status=ALL_READY))
    assert rollout == Rollout(desired=1, replicas=1, updated=1, ready=1, available=1, observed=True, stalled=False)
    assert rollout.complete


def test_all_groups_ready_is_running_and_available():
    phase, conditions = phase_of(lws(status=ALL_READY))
    assert phase == "Running"
    assert conditions["Available"] == "True"
    assert conditions["Degraded"] == "False"


def test_a_new_set_without_status_is_progressing():
    phase, conditions = phase_of(lws())
    assert phase == "Progressing"
    assert conditions["Available"] == "False"
    assert conditions["Progressing"] == "True"


def test_a_group_whose_worker_is_not_ready_does_not_count():
    # LWS counts a group ready only when its leader and all workers are: leader up, worker pending -> 0 ready.
    status = {**ALL_READY, "readyReplicas": 0, "conditions": []}
    phase, conditions = phase_of(lws(status=status))
    assert phase == "Progressing"
    assert conditions["Available"] == "False"


def test_a_spec_lws_has_not_seen_yet_is_not_complete():
    rollout = Rollout.from_workload(lws(generation=2, status=ALL_READY))
    assert not rollout.observed
    assert not rollout.complete


def test_a_rolling_update_counts_only_updated_groups():
    status = {**ALL_READY, "replicas": 2, "readyReplicas": 2, "updatedReplicas": 1}
    rollout = Rollout.from_workload(lws(replicas=2, status=status))
    assert not rollout.complete
    phase, conditions = phase_of(lws(replicas=2, status=status))
    assert phase == "Progressing"
    assert conditions["Available"] == "False"


def test_deployments_still_read_as_deployments():
    deployment = rolled_out_deployment(generation=3)
    assert Rollout.from_workload(deployment) == Rollout.from_deployment(deployment)
    assert Rollout.from_workload(deployment).complete
