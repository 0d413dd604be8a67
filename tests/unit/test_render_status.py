"""Status from the validation result and the Deployment's rollout (pure)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from llama_operator.planning import validate
from llama_operator.planning.capacity import CapacityVerdict
from llama_operator.render.status import Rollout, compute, known_good_pending, transitions
from tests.unit.workloads import rolled_out_deployment

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
VALID = validate(yaml.safe_load((EXAMPLES / "llama31-8b-h100.yaml").read_text()))
INVALID = validate(yaml.safe_load((EXAMPLES / "invalid-llama4-tp5.yaml").read_text()))
T0, T1 = "2026-11-22T00:00:00Z", "2026-11-22T00:05:00Z"


def rollout(desired: int = 1, ready: int = 1, updated: int | None = None, **kw: Any) -> Rollout:
    updated = ready if updated is None else updated
    values = {
        "desired": desired,
        "replicas": max(desired, updated),
        "updated": updated,
        "ready": ready,
        "available": ready,
        "observed": True,
        "stalled": False,
        **kw,
    }
    return Rollout(**values)


def status(
    result=VALID,
    roll: Rollout | None = None,
    old: dict[str, Any] | None = None,
    now: str = T0,
    pods_ready: tuple[bool, str, str] | None = None,
):
    return compute(
        generation=2, result=result, rollout=roll, old=old or {}, now=now, endpoint="e", selector="s",
        pods_ready=pods_ready,
    )  # fmt: skip


def conditions(doc: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in doc["conditions"]}


def test_running_when_every_replica_is_ready():
    first = status(roll=rollout(desired=2, ready=2))
    assert "lastKnownGood" not in first  # not before it has served a while
    doc = status(roll=rollout(desired=2, ready=2), old=first, now=T1)
    assert doc["phase"] == "Running"
    assert conditions(doc) == {
        "Validated": ("True", "ValidationPassed"),
        "Progressing": ("False", "RolloutComplete"),
        "Available": ("True", "MinimumReplicasAvailable"),
        "Degraded": ("False", "AsExpected"),
        # Validated offline: no view of the cluster's nodes (planning.capacity).
        "Capacity": ("Unknown", "NodesNotObserved"),
    }
    assert doc["lastKnownGood"]["generation"] == 2
    assert doc["lastKnownGood"]["args"] == VALID.effective.args
    assert all(c["observedGeneration"] == 2 for c in doc["conditions"])


def test_progressing_while_rolling_out_and_pending_before_the_deployment_exists():
    assert status()["phase"] == "Pending"
    doc = status(roll=rollout(desired=2, ready=1, updated=1))
    assert doc["phase"] == "Progressing"
    assert conditions(doc)["Progressing"] == ("True", "RollingOut")
    assert "lastKnownGood" not in doc
    assert status(roll=rollout(observed=False))["phase"] == "Progressing"


def test_degraded_when_a_finished_rollout_loses_replicas_or_stalls():
    lost = status(roll=Rollout(desired=2, replicas=2, updated=2, ready=1, available=2, observed=True, stalled=False))
    assert lost["phase"] == "Degraded"
    assert conditions(lost)["Degraded"] == ("True", "ReplicasNotReady")
    stalled = status(roll=rollout(desired=2, ready=0, updated=2, stalled=True))
    assert conditions(stalled)["Degraded"] == ("True", "ProgressDeadlineExceeded")
    assert conditions(stalled)["Available"][0] == "False"


def test_invalid_spec_reports_findings_and_deploys_nothing():
    doc = status(result=INVALID)
    assert doc["phase"] == "Invalid"
    assert conditions(doc)["Validated"] == ("False", "ValidationFailed")
    assert "tp_incompatible_with_kv_heads" in next(c for c in doc["conditions"] if c["type"] == "Validated")["message"]
    assert {f["code"] for f in doc["findings"]} >= {"tp_incompatible_with_kv_heads"}
    # An older valid Deployment may still serve: the phase stays Invalid, Available reports it.
    serving = status(result=INVALID, roll=rollout())
    assert serving["phase"] == "Invalid"
    assert conditions(serving)["Available"][0] == "True"


def test_recomputing_an_unchanged_status_is_identical_and_emits_nothing():
    first = status(roll=rollout(), old=status(roll=rollout()), now=T1)
    again = status(roll=rollout(), old=first, now=T1)
    assert again == first
    assert transitions(first, again) == []


def test_transitions_keep_and_move_last_transition_times():
    first = status(roll=rollout())
    degraded = status(roll=Rollout(1, 1, 1, 0, 1, True, False), old=first, now=T1)
    times = {c["type"]: c["lastTransitionTime"] for c in degraded["conditions"]}
    assert times["Validated"] == T0
    assert times["Degraded"] == T1
    changed = {(t.type, t.status, t.warning) for t in transitions(first, degraded)}
    assert changed == {("Degraded", "True", True)}


def test_capacity_is_its_own_condition_and_a_false_one_is_a_warning_event():
    # The cluster's nodes cannot hold it (planning.capacity): the rollout's conditions and the phase are untouched.
    short = CapacityVerdict("False", "InsufficientAllocatableGPUs", "2 replica(s) x 8 GPUs need 16, 8 allocatable")
    fits = CapacityVerdict("True", "GPUsAllocatable", "fits")
    first = status(result=dataclasses.replace(VALID, capacity=fits), roll=rollout())
    later = status(result=dataclasses.replace(VALID, capacity=short), roll=rollout(), old=first, now=T1)
    assert conditions(later)["Capacity"] == ("False", "InsufficientAllocatableGPUs")
    assert later["phase"] == first["phase"] == "Running"
    (moved,) = transitions(first, later)
    assert (moved.type, moved.status, moved.reason, moved.warning) == ("Capacity", "False", short.reason, True)
    assert moved.message == short.message
    # An invalid spec is not judged: no Capacity condition, and an earlier one goes.
    invalid = status(result=INVALID, old=later, now=T1)
    assert "Capacity" not in conditions(invalid)


def test_conditions_owned_by_crash_remediation_pass_through():
    crash = {"type": "CrashLooping", "status": "True", "reason": "RemediationExhausted", "message": "m"}
    doc = status(roll=rollout(), old={"conditions": [crash]})
    assert crash in doc["conditions"]


def test_rollout_from_a_deployment_object():
    deployment = rolled_out_deployment(generation=4)
    assert Rollout.from_deployment(deployment).complete
    deployment["status"]["observedGeneration"] = 3
    assert not Rollout.from_deployment(deployment).complete
    stalled = {"spec": {}, "status": {"conditions": [{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}]}}
    assert Rollout.from_deployment(stalled).stalled


def test_a_crash_loop_degrades_and_an_exhausted_one_fails():
    looping = {"type": "CrashLooping", "status": "True", "reason": "Remediating", "message": "block table"}
    doc = status(roll=rollout(desired=1, ready=0, updated=1), old={"conditions": [looping]})
    assert doc["phase"] == "CrashLooping"
    assert conditions(doc)["Degraded"] == ("True", "CrashLooping")
    exhausted = {**looping, "reason": "RemediationExhausted"}
    assert status(roll=rollout(ready=0), old={"conditions": [exhausted]})["phase"] == "Failed"
    settled = {**looping, "status": "False", "reason": "Recovered"}
    assert status(roll=rollout(), old={"conditions": [settled]})["phase"] == "Running"


def test_last_known_good_waits_until_the_configuration_has_served():
    first = status(roll=rollout())
    assert known_good_pending(first, 2)
    early = status(roll=rollout(), old=first, now="2026-11-22T00:00:05Z")
    assert "lastKnownGood" not in early
    served = status(roll=rollout(), old=early, now="2026-11-22T00:00:10Z")
    assert served["lastKnownGood"]["time"] == "2026-11-22T00:00:10Z"
    assert not known_good_pending(served, 2)


def test_pods_ready_is_written_when_the_pods_were_seen_and_kept_when_not():
    why = "0/1 pods ready; pod p: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    stuck = status(roll=rollout(ready=0), pods_ready=(False, "Unschedulable", why))
    assert conditions(stuck)["PodsReady"] == ("False", "Unschedulable")
    available = next(c for c in stuck["conditions"] if c["type"] == "Available")
    assert available["message"] == "0/1 replicas ready; PodsReady: Unschedulable"
    # A look that did not see the pods (no index yet) keeps what the last one wrote.
    kept = status(roll=rollout(ready=0), old=stuck, now=T1)
    assert next(c for c in kept["conditions"] if c["type"] == "PodsReady") == next(
        c for c in stuck["conditions"] if c["type"] == "PodsReady"
    )
    ready = status(roll=rollout(), old=stuck, now=T1, pods_ready=(True, "PodsReady", "1/1 pods ready"))
    assert conditions(ready)["PodsReady"] == ("True", "PodsReady")
    assert [(t.type, t.status) for t in transitions(stuck, ready) if t.type == "PodsReady"] == [("PodsReady", "True")]


def test_the_reason_column_names_what_most_explains_the_phase():
    assert status(result=INVALID)["reason"] == "ValidationFailed"
    assert status(roll=rollout())["reason"] == ""
    assert status(roll=rollout(), pods_ready=(True, "PodsReady", "1/1 pods ready"))["reason"] == ""
    stuck = status(roll=rollout(ready=0), pods_ready=(False, "ImagePullFailed", "..."))
    assert stuck["phase"] == "Progressing"
    assert stuck["reason"] == "ImagePullFailed"
    waiting = {"type": "CrashLooping", "status": "True", "reason": "RemediationWaitingForCapacity", "message": "m"}
    crashing = status(roll=rollout(ready=0), old={"conditions": [waiting]}, pods_ready=(False, "Unschedulable", ""))
    assert crashing["reason"] == "RemediationWaitingForCapacity"
    stalled = status(roll=rollout(desired=2, ready=0, updated=2, stalled=True))
    assert stalled["reason"] == "ProgressDeadlineExceeded"
