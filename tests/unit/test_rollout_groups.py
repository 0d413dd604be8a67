"""Progressive rollout of multi-node replicas (desired/rollout_groups.py): a LeaderWorkerSet moves its groups with
its own partition, no second set and no surge, each step held for the window; a crash halts and the moved groups
return to the previous template."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from llama_operator.desired import Desired, Inputs, desired_state
from llama_operator.desired import rollout as progressive
from llama_operator.knowledge import load_knowledge
from llama_operator.render.labels import CONFIG_HASH_ANNOTATION

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "llama4-maverick-bf16-h100-multinode.yaml"
INPUTS = Inputs(load_knowledge())
T0 = datetime(2026, 9, 1, 12, 0, tzinfo=UTC)
GROUPS = 2
NAME = "llama4-maverick-bf16"


def _at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _llama(generation: int, max_model_len: int, status: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    body["metadata"].update(namespace="ai", uid="u-1", generation=generation)
    body["spec"]["replicas"] = GROUPS
    body["spec"]["resources"]["nodeCount"] = 2 * GROUPS
    body["spec"]["engine"]["maxModelLen"] = max_model_len
    body["spec"]["rollout"] = {"stabilityWindow": "60s"}
    body["status"] = status or {}
    return body


def _lws(state: Desired) -> dict[str, Any]:
    return next(m for m in state.manifests if m["kind"] == "LeaderWorkerSet")


def _live(manifest: dict[str, Any]) -> dict[str, Any]:
    status = {"observedGeneration": 1, "replicas": GROUPS, "updatedReplicas": GROUPS, "readyReplicas": GROUPS}
    return {**manifest, "metadata": {**manifest["metadata"], "generation": 1}, "status": status}


def _hash(lws: dict[str, Any]) -> str:
    return str(lws["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION])


def _group(index: int, config_hash: str, ready_at: float | None, **crashed: Any) -> tuple[dict[str, Any], ...]:
    """A group's leader and worker pods."""
    pods = []
    for worker in (0, 1):
        conditions = [{"type": "PodScheduled", "status": "True"}]
        if ready_at is not None:
            conditions.append({"type": "Ready", "status": "True", "lastTransitionTime": _at(ready_at)})
        container = {"name": "vllm", "ready": ready_at is not None, "restartCount": 0, "state": {"running": {}}}
        pods.append(
            {
                "metadata": {
                    "name": f"{NAME}-{index}" + (f"-{worker}" if worker else ""),
                    "labels": {
                        "llamaops.dev/deployment": NAME,
                        "leaderworkerset.sigs.k8s.io/worker-index": str(worker),
                        "leaderworkerset.sigs.k8s.io/group-index": str(index),
                    },
                    "annotations": {CONFIG_HASH_ANNOTATION: config_hash},
                    "creationTimestamp": _at(0),
                },
                "status": {
                    "phase": "Running",
                    "conditions": conditions,
                    "containerStatuses": [{**container, **crashed}],
                },
            }
        )
    return tuple(pods)


def _look(body: dict[str, Any], live: dict[str, Any], pods: tuple[dict[str, Any], ...], at: float) -> Desired:
    state = desired_state(body, INPUTS, workload=live, now=_t(at), apply=True)
    assert state is not None
    return progressive.steer(state, progressive.View(live, None, pods, _t(at)))


@pytest.fixture
def old_lws() -> dict[str, Any]:
    state = desired_state(_llama(1, 262144), INPUTS, workload=None, now=T0, apply=True)
    assert state is not None
    return _live(_lws(state))


def _partition(lws: dict[str, Any]) -> int:
    return int(lws["spec"]["rolloutStrategy"]["rollingUpdateConfiguration"]["partition"])


def _started(old_lws: dict[str, Any]) -> tuple[Desired, str]:
    old = _hash(old_lws)
    first = _look(_llama(2, 131072), old_lws, (*_group(0, old, 0), *_group(1, old, 0)), 0)
    return first, _hash(_lws(first))


def test_groups_move_with_the_partition_step_by_step_and_complete(old_lws: dict[str, Any]) -> None:
    old = _hash(old_lws)
    first, new = _started(old_lws)
    lws = _lws(first)
    # The canary: the new template with the highest group above the partition, no surge; the previous kept.
    assert new != old
    assert _partition(lws) == GROUPS - 1
    assert lws["spec"]["rolloutStrategy"]["rollingUpdateConfiguration"]["maxSurge"] == 0
    assert (
        json.loads(lws["metadata"]["annotations"]["llamaops.dev/previous-template"])
        == old_lws["spec"]["leaderWorkerTemplate"]
    )
    rollout = first.status["rollout"]
    assert (rollout["phase"], rollout["step"], rollout["steps"]) == ("Canary", 1, GROUPS)
    assert (rollout["oldReplicas"], rollout["newReplicas"]) == (1, 1)
    assert "RolloutStarted" in [e.reason for e in first.events]
    assert not any(m["kind"] == "Deployment" and m["metadata"]["name"].endswith("-canary") for m in first.manifests)

    live = _live(lws)
    canary = (*_group(0, old, 0), *_group(1, new, 10))
    held = _look(_llama(2, 131072, first.status), live, canary, 30)
    assert held.status["rollout"]["reason"] == "Holding"
    assert _partition(_lws(held)) == GROUPS - 1
    promoted = _look(_llama(2, 131072, held.status), live, canary, 71)
    rollout = promoted.status["rollout"]
    assert (rollout["phase"], rollout["verdict"], rollout["step"]) == ("Promoting", "Passed", 2)
    assert (rollout["oldReplicas"], rollout["newReplicas"]) == (0, GROUPS)
    assert _partition(_lws(promoted)) == 0
    assert "RolloutPromoted" in [e.reason for e in promoted.events]

    rolled = (*_group(0, new, 80), *_group(1, new, 10))
    holding = _look(_llama(2, 131072, promoted.status), _live(_lws(promoted)), rolled, 100)
    assert holding.status["rollout"]["phase"] == "Promoting"
    assert "held 20 of 60 s" in holding.status["rollout"]["message"]
    done = _look(_llama(2, 131072, holding.status), _live(_lws(holding)), rolled, 141)
    assert done.status["rollout"]["phase"] == "Completed"
    assert _partition(_lws(done)) == 0
    assert "llamaops.dev/previous-template" not in _lws(done)["metadata"]["annotations"]
    assert "RolloutCompleted" in [e.reason for e in done.events]


def test_a_crashing_group_halts_and_the_moved_groups_return(old_lws: dict[str, Any]) -> None:
    old = _hash(old_lws)
    first, new = _started(old_lws)
    crashed = {
        "restartCount": 1,
        "ready": False,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 139, "startedAt": _at(5), "finishedAt": _at(7)}},
    }
    pods = (*_group(0, old, 0), *_group(1, new, None, **crashed))
    halted = _look(_llama(2, 131072, first.status), _live(_lws(first)), pods, 9)
    rollout = halted.status["rollout"]
    assert (rollout["phase"], rollout["reason"], rollout["step"]) == ("Halted", "CrashLoop", 1)
    lws = _lws(halted)
    # The previous template at the same partition: the moved group rolls back, the other was never touched.
    assert lws["spec"]["leaderWorkerTemplate"] == old_lws["spec"]["leaderWorkerTemplate"]
    assert _partition(lws) == GROUPS - 1
    assert (rollout["oldReplicas"], rollout["newReplicas"]) == (1, 1)
    assert progressive.needs_look(halted.status, 2)
    condition = next(c for c in halted.status["conditions"] if c["type"] == "RolloutHalted")
    assert (condition["status"], condition["reason"]) == ("True", "CrashLoop")

    # Once the group runs the previous configuration again: halted, nothing more to look at.
    back = (*_group(0, old, 0), *_group(1, old, 20))
    again = _look(_llama(2, 131072, halted.status), _live(lws), back, 30)
    assert _lws(again)["spec"]["leaderWorkerTemplate"] == old_lws["spec"]["leaderWorkerTemplate"]
    assert (again.status["rollout"]["oldReplicas"], again.status["rollout"]["newReplicas"]) == (GROUPS, 0)
    assert not progressive.needs_look(again.status, 2)


def _recreated(group: int, at: float) -> dict[str, Any]:
    """LWS's Event for a group it recreated after a crash of one of its pods (its pod controller's words)."""
    message = f"Worker pod {NAME}-{group}-1 failed, deleted leader pod {NAME}-{group} to recreate group {group}"
    return {"reason": "RecreateGroup", "message": message, "firstTimestamp": _at(at), "lastTimestamp": _at(at)}


def test_a_recreated_group_of_the_new_configuration_halts_and_one_of_the_previous_does_not(
    old_lws: dict[str, Any],
) -> None:
    # RecreateGroupOnPodRestart: a crashing group's pods start over at restart count 0; only LWS's Events show it.
    old = _hash(old_lws)
    first, new = _started(old_lws)
    live = _live(_lws(first))
    pods = (*_group(0, old, 0), *_group(1, new, None))

    def look(events: tuple[dict[str, Any], ...]) -> Desired:
        state = desired_state(_llama(2, 131072, first.status), INPUTS, workload=live, now=_t(20), apply=True)
        assert state is not None
        return progressive.steer(state, progressive.View(live, None, pods, _t(20), events=events))

    # Group 0 keeps the previous configuration (below the partition); an old crash of group 1 predates the rollout;
    # LWS's rolling update recreated group 1 once as it replaced it (a worker of the previous configuration went
    # first): none of these is a crash loop of the new configuration.
    calm = (_recreated(0, 12), _recreated(0, 14), _recreated(1, -30), _recreated(1, -20), _recreated(1, 3))
    assert look(calm).status["rollout"]["phase"] == "Canary"
    halted = look((_recreated(1, 3), _recreated(1, 12))).status["rollout"]
    assert (halted["phase"], halted["reason"]) == ("Halted", "CrashLoop")
    assert "recreated the group" in halted["message"]
