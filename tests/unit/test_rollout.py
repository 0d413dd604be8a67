"""Progressive rollout (desired/rollout.py, planning/rollout.py): a new spec generation of several replicas moves a
canary first without surge, a crashing or late canary halts and returns its replicas, a healthy one is promoted."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from llama_operator.api import LlamaDeployment, LlamaDeploymentStatus
from llama_operator.desired import Desired, Inputs, desired_state
from llama_operator.desired import rollout as progressive
from llama_operator.handlers import rechecks
from llama_operator.handlers.metrics import ROLLOUT_HALT_SECONDS, ROLLOUTS, observe_rollout
from llama_operator.health.policy import watched_config
from llama_operator.knowledge import load_knowledge
from llama_operator.planning import validate
from llama_operator.planning.rollout import check_rollout, policy_of, startup_budget_s
from llama_operator.render.labels import CONFIG_HASH_ANNOTATION

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "llama31-8b-h100.yaml"
INPUTS = Inputs(load_knowledge())
T0 = datetime(2026, 9, 1, 12, 0, tzinfo=UTC)
REPLICAS = 4
OURS = {reason for _, reason in progressive.EVENT_REASONS.values()}


def _at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _llama(generation: int, version: str, status: dict[str, Any] | None = None, **rollout: Any) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    body["metadata"].update(namespace="ai", uid="u-1", generation=generation)
    body["spec"]["replicas"] = REPLICAS
    body["spec"]["engine"]["vllmVersion"] = version
    body["spec"]["rollout"] = {"stabilityWindow": "60s", **rollout}
    body["status"] = status or {}
    return body


def _live(manifest: dict[str, Any], ready: int | None = None) -> dict[str, Any]:
    replicas = manifest["spec"]["replicas"]
    ready = replicas if ready is None else ready
    return {
        **manifest,
        "metadata": {**manifest["metadata"], "generation": 1},
        "status": {
            "observedGeneration": 1,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": ready,
            "availableReplicas": ready,
        },
    }


def _stable_of(state: Desired, name: str = "llama31-8b") -> dict[str, Any]:
    return next(m for m in state.manifests if m["kind"] == "Deployment" and m["metadata"]["name"] == name)


def _pod(name: str, config_hash: str, *, canary: bool, ready_at: float | None, created: float = 0.0, **state: Any):
    labels = {"llamaops.dev/deployment": "llama31-8b", **({progressive.TRACK_LABEL: "canary"} if canary else {})}
    conditions = [{"type": "PodScheduled", "status": "True"}]
    if ready_at is not None:
        conditions.append({"type": "Ready", "status": "True", "lastTransitionTime": _at(ready_at)})
    container = {"name": "vllm", "ready": ready_at is not None, "restartCount": 0, "state": {"running": {}}, **state}
    return {
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {CONFIG_HASH_ANNOTATION: config_hash},
            "creationTimestamp": _at(created),
        },
        "status": {"phase": "Running", "conditions": conditions, "containerStatuses": [container]},
    }


def _look(body: dict[str, Any], view: progressive.View) -> Desired:
    state = desired_state(body, INPUTS, workload=view.stable, now=view.now, apply=True)
    assert state is not None
    return progressive.steer(state, view)


@pytest.fixture
def old_stable() -> dict[str, Any]:
    """The stable Deployment of generation 1 (vLLM 0.31.0), four replicas ready."""
    state = desired_state(_llama(1, "0.31.0"), INPUTS, workload=None, now=T0, apply=True)
    assert state is not None
    return _live(_stable_of(state))


def _hash(deployment: dict[str, Any]) -> str:
    return str(deployment["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION])


def test_a_new_generation_starts_a_canary_without_surge(old_stable: dict[str, Any]) -> None:
    old = _hash(old_stable)
    pods = tuple(_pod(f"old-{i}", old, canary=False, ready_at=0) for i in range(REPLICAS))
    state = _look(_llama(2, "0.32.0"), progressive.View(old_stable, None, pods, T0))
    stable = _stable_of(state)
    canary = _stable_of(state, "llama31-8b-canary")
    # The stable Deployment keeps its running template (its pods are not restarted) and gives up one replica.
    assert stable["spec"]["template"] == old_stable["spec"]["template"]
    assert stable["spec"]["replicas"] == REPLICAS - 1
    # All four old pods still hold their GPUs: the canary waits.
    assert canary["spec"]["replicas"] == 0
    assert "vllm:0.32.0" in canary["spec"]["template"]["spec"]["containers"][0]["image"]
    assert canary["spec"]["selector"]["matchLabels"][progressive.TRACK_LABEL] == "canary"
    rollout = state.status["rollout"]
    assert (rollout["phase"], rollout["step"], rollout["generation"]) == ("Canary", 1, 2)
    assert (rollout["oldReplicas"], rollout["newReplicas"]) == (REPLICAS - 1, 0)
    assert rollout["oldConfigHash"] == old
    assert [e.reason for e in state.events if e.reason.startswith("Rollout")] == ["RolloutStarted"]
    assert state.changed


def _started(old_stable: dict[str, Any]) -> tuple[dict[str, Any], str, Desired]:
    old = _hash(old_stable)
    pods = tuple(_pod(f"old-{i}", old, canary=False, ready_at=0) for i in range(REPLICAS))
    first = _look(_llama(2, "0.32.0"), progressive.View(old_stable, None, pods, T0))
    return first.status, _hash(_stable_of(first, "llama31-8b-canary")), first


def test_the_canary_grows_only_as_the_stable_pods_go(old_stable: dict[str, Any]) -> None:
    status, new, first = _started(old_stable)
    old = _hash(old_stable)
    stable_live = _live(_stable_of(first))
    pods = tuple(_pod(f"old-{i}", old, canary=False, ready_at=0) for i in range(REPLICAS - 1))
    canary_live = _live(_stable_of(first, "llama31-8b-canary"))
    state = _look(_llama(2, "0.32.0", status), progressive.View(stable_live, canary_live, pods, T0))
    assert _stable_of(state, "llama31-8b-canary")["spec"]["replicas"] == 1
    assert state.status["rollout"]["newReplicas"] == 1
    # The status is computed from the stable Deployment as applied (3 of 3 ready): Running, not Progressing.
    assert state.phase == "Running"
    assert _stable_of(state)["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION] == old
    del new


def test_a_crashing_canary_halts_and_returns_its_replica(old_stable: dict[str, Any]) -> None:
    status, new, first = _started(old_stable)
    old = _hash(old_stable)
    stable_live = _live(_stable_of(first))
    crashed = {
        "restartCount": 1,
        "ready": False,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 139, "startedAt": _at(5), "finishedAt": _at(7)}},
    }
    canary_pod = _pod("canary-0", new, canary=True, ready_at=None, created=4, **crashed)
    pods = (*(_pod(f"old-{i}", old, canary=False, ready_at=0) for i in range(REPLICAS - 1)), canary_pod)
    canary_live = _live(_stable_of(first, "llama31-8b-canary"))
    state = _look(_llama(2, "0.32.0", status), progressive.View(stable_live, canary_live, pods, T0 + timedelta(9)))
    rollout = state.status["rollout"]
    assert (rollout["phase"], rollout["verdict"], rollout["reason"]) == ("Halted", "Failed", "CrashLoop")
    assert rollout["failedAt"] == _at(7)
    assert "canary-0" in rollout["message"]
    # The canary goes; the stable Deployment is scaled back up as its pod goes, on the previous template.
    assert state.prune == ("llama31-8b-canary",)
    assert all(m["metadata"]["name"] != "llama31-8b-canary" for m in state.manifests)
    stable = _stable_of(state)
    assert stable["spec"]["template"] == old_stable["spec"]["template"]
    assert stable["spec"]["replicas"] == REPLICAS - 1
    assert [e.type for e in state.events if e.reason == "RolloutHalted"] == ["Warning"]
    assert progressive.needs_look(state.status, 2)
    halted = _conditions(state.status)["RolloutHalted"]
    assert (halted["status"], halted["reason"], halted["observedGeneration"]) == ("True", "CrashLoop", 2)
    assert "canary-0" in halted["message"]
    # kubectl get's Reason column tells the halt (the Rollout column says Halted).
    assert state.status["reason"] == "CrashLoop"

    # The canary pod is gone: back to four, halted until the spec changes, and no look needed any more.
    left = tuple(p for p in pods if p is not canary_pod)
    again = _look(_llama(2, "0.32.0", state.status), progressive.View(stable_live, None, left, T0 + timedelta(20)))
    assert _stable_of(again)["spec"]["replicas"] == REPLICAS
    assert _stable_of(again)["spec"]["template"] == old_stable["spec"]["template"]
    assert again.status["rollout"]["reason"] == "CrashLoop"
    assert (again.status["rollout"]["oldReplicas"], again.status["rollout"]["newReplicas"]) == (REPLICAS, 0)
    assert not {e.reason for e in again.events} & OURS
    assert not progressive.needs_look(again.status, 2)
    assert _conditions(again.status)["RolloutHalted"] == halted
    # Halted until the spec changes: no second look every few seconds, for lastKnownGood or anything else.
    serving = {**again.status, "phase": "Running"}  # the four stable replicas serve the previous configuration
    assert rechecks.needs(serving, 2) == set()
    assert rechecks.needs({k: v for k, v in serving.items() if k != "rollout"}, 2) == {rechecks.KNOWN_GOOD}

    # The next generation (AllAtOnce here) replaces the halted change: RolloutHalted turns False.
    changed = _look(
        _llama(3, "0.31.0", again.status, policy="AllAtOnce"), progressive.View(stable_live, None, left, _t(30))
    )
    cleared = _conditions(changed.status)["RolloutHalted"]
    assert (cleared["status"], cleared["reason"], cleared["observedGeneration"]) == ("False", "SpecChanged", 3)
    assert changed.status["reason"] != "CrashLoop"


def _conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def test_a_canary_not_ready_within_the_deadline_halts(old_stable: dict[str, Any]) -> None:
    body = _llama(2, "0.32.0", progressDeadline="2h")
    old = _hash(old_stable)
    pods = tuple(_pod(f"old-{i}", old, canary=False, ready_at=0) for i in range(REPLICAS))
    first = _look(body, progressive.View(old_stable, None, pods, T0))
    new = _hash(_stable_of(first, "llama31-8b-canary"))
    late = _pod("canary-0", new, canary=True, ready_at=None, created=0)
    pods = (*pods[1:], late)
    view = progressive.View(_live(_stable_of(first)), None, pods, T0 + timedelta(hours=2, seconds=1))
    state = _look(_llama(2, "0.32.0", first.status, progressDeadline="2h"), view)
    assert state.status["rollout"]["reason"] == "ReadinessTimeout"
    assert state.status["rollout"]["phase"] == "Halted"


def test_a_ready_canary_is_held_for_the_window_then_promoted_and_completed(old_stable: dict[str, Any]) -> None:
    status, new, first = _started(old_stable)
    old = _hash(old_stable)
    olds = tuple(_pod(f"old-{i}", old, canary=False, ready_at=0) for i in range(REPLICAS - 1))
    canary_pod = _pod("canary-0", new, canary=True, ready_at=10, created=5)
    stable_live = _live(_stable_of(first))
    canary_live = _live({**_stable_of(first, "llama31-8b-canary"), "spec": {"replicas": 1}})
    held = _look(_llama(2, "0.32.0", status), progressive.View(stable_live, canary_live, (*olds, canary_pod), _t(30)))
    assert held.status["rollout"]["reason"] == "Holding"
    assert held.status["rollout"]["phase"] == "Canary"

    promoted = _look(
        _llama(2, "0.32.0", held.status), progressive.View(stable_live, canary_live, (*olds, canary_pod), _t(71))
    )
    rollout = promoted.status["rollout"]
    assert (rollout["phase"], rollout["verdict"], rollout["step"]) == ("Promoting", "Passed", 2)
    # Three stable pods still run the previous configuration, the canary the new one.
    assert (rollout["oldReplicas"], rollout["newReplicas"]) == (REPLICAS - 1, 1)
    # The rest follow on the stable Deployment (its own rolling update, no surge), the canary kept meanwhile.
    stable = _stable_of(promoted)
    assert _hash(stable) == new
    assert stable["spec"]["replicas"] == REPLICAS - 1
    assert _stable_of(promoted, "llama31-8b-canary")["spec"]["replicas"] == 1
    assert "RolloutPromoted" in [e.reason for e in promoted.events]

    # The stable Deployment has rolled: the canary goes, and its replica returns to the stable one as it goes.
    rolled = _live(stable)
    news = tuple(_pod(f"new-{i}", new, canary=False, ready_at=80) for i in range(REPLICAS - 1))
    finishing = _look(
        _llama(2, "0.32.0", promoted.status), progressive.View(rolled, canary_live, (*news, canary_pod), _t(90))
    )
    assert finishing.prune == ("llama31-8b-canary",)
    assert _stable_of(finishing)["spec"]["replicas"] == REPLICAS - 1
    assert finishing.status["rollout"]["phase"] == "Promoting"
    done = _look(_llama(2, "0.32.0", finishing.status), progressive.View(rolled, None, news, _t(95)))
    assert done.status["rollout"]["phase"] == "Completed"
    assert [_conditions(s.status)["RolloutHalted"]["status"] for s in (held, promoted, done)] == ["False"] * 3
    assert _conditions(done.status)["RolloutHalted"]["reason"] == "Completed"
    assert _stable_of(done)["spec"]["replicas"] == REPLICAS
    assert "RolloutCompleted" in [e.reason for e in done.events]
    # Completed: later looks render as usual.
    after = _look(_llama(2, "0.32.0", done.status), progressive.View(_live(_stable_of(done)), None, news, _t(99)))
    assert _stable_of(after)["spec"]["replicas"] == REPLICAS
    assert not after.prune
    assert not {e.reason for e in after.events} & OURS


def _terminating(pod: dict[str, Any]) -> dict[str, Any]:
    return {**pod, "metadata": {**pod["metadata"], "deletionTimestamp": _at(1)}}


def test_the_rest_move_step_by_step_each_held_and_a_crash_in_a_later_step_halts(old_stable: dict[str, Any]) -> None:
    status, new, first = _started(old_stable)
    old = _hash(old_stable)
    olds = tuple(_pod(f"old-{i}", old, canary=False, ready_at=0) for i in range(REPLICAS - 1))
    canary_pod = _pod("canary-0", new, canary=True, ready_at=10, created=5)
    canary_live = _live({**_stable_of(first, "llama31-8b-canary"), "spec": {"replicas": 1}})
    view = progressive.View(_live(_stable_of(first)), canary_live, (*olds, canary_pod), _t(71))
    promoted = _look(_llama(2, "0.32.0", status), view)
    rollout = promoted.status["rollout"]
    assert (rollout["phase"], rollout["step"], rollout["steps"]) == ("Promoting", 2, 4)
    # The stable Deployment moves one replica at a time and holds each for the window (its minReadySeconds), no
    # surge; it keeps the previous template to return to.
    stable = _stable_of(promoted)
    assert stable["spec"]["minReadySeconds"] == 60
    assert stable["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    kept = json.loads(stable["metadata"]["annotations"][progressive.PREVIOUS_TEMPLATE_ANNOTATION])
    assert kept == old_stable["spec"]["template"]
    stable_live = _live(stable, ready=REPLICAS - 3)

    def look(status: dict[str, Any], pods: tuple[dict[str, Any], ...], at: float) -> Desired:
        return _look(_llama(2, "0.32.0", status), progressive.View(stable_live, canary_live, pods, _t(at)))

    # Step 2: an old pod has gone, its replacement starts on the new configuration, then is held.
    starting = _pod("new-0", new, canary=False, ready_at=None, created=72)
    two = look(promoted.status, (_terminating(olds[0]), *olds[1:], starting, canary_pod), 73)
    assert (
        two.status["rollout"]["step"],
        two.status["rollout"]["oldReplicas"],
        two.status["rollout"]["newReplicas"],
    ) == (2, 2, 2)
    ready_one = _pod("new-0", new, canary=False, ready_at=80, created=72)
    holding = look(two.status, (*olds[1:], ready_one, canary_pod), 100)
    assert holding.status["rollout"]["reason"] == "Holding"
    assert "held 20 of 60 s" in holding.status["rollout"]["message"]
    # Step 3: the next old pod goes; announced with its counts.
    crashing = _pod(
        "new-1",
        new,
        canary=False,
        ready_at=None,
        created=141,
        restartCount=2,
        state={"waiting": {"reason": "CrashLoopBackOff"}},
        lastState={"terminated": {"exitCode": 139, "startedAt": _at(150), "finishedAt": _at(152)}},
    )
    fresh = _pod("new-1", new, canary=False, ready_at=None, created=141)
    three = look(holding.status, (olds[2], ready_one, fresh, canary_pod), 142)
    rollout = three.status["rollout"]
    assert (rollout["step"], rollout["oldReplicas"], rollout["newReplicas"]) == (3, 1, 3)
    assert [e.reason for e in three.events if e.reason.startswith("Rollout")] == ["RolloutStep"]
    # A crash loop in step 3 halts: the canary goes and the stable Deployment returns to the previous template.
    halted = look(three.status, (olds[2], ready_one, crashing, canary_pod), 160)
    rollout = halted.status["rollout"]
    assert (rollout["phase"], rollout["reason"], rollout["step"]) == ("Halted", "CrashLoop", 3)
    assert rollout["message"].startswith("step 3: ")
    assert halted.prune == ("llama31-8b-canary",)
    back = _stable_of(halted)
    assert back["spec"]["template"] == old_stable["spec"]["template"]
    assert back["spec"]["replicas"] == REPLICAS - 1
    assert "minReadySeconds" not in back["spec"]
    # Three pods still run the new configuration: looked at again until they are gone.
    assert (rollout["oldReplicas"], rollout["newReplicas"]) == (1, 3)
    assert progressive.needs_look(halted.status, 2)


def test_a_remediation_during_the_canary_supersedes_the_rollout(old_stable: dict[str, Any]) -> None:
    status, new, first = _started(old_stable)
    old = _hash(old_stable)
    olds = tuple(_pod(f"old-{i}", old, canary=False, ready_at=0) for i in range(REPLICAS - 1))
    canary_pod = _pod("canary-0", new, canary=True, ready_at=10, created=5)
    live = _live(_stable_of(first))
    canary_live = _live(_stable_of(first, "llama31-8b-canary"))
    # While the rollout moves, the crash-loop watch looks at the previous configuration's pods (the stable
    # replicas); the rollout judges the canary's.
    assert watched_config(LlamaDeploymentStatus.model_validate(status), 2) == old
    # The stable replicas crash-loop; the remediation sets overrides for this generation and re-renders it.
    overrides = {"generation": 2, "action": "SetMaxModelLen", "maxModelLen": 65536}
    remediated = {**status, "overrides": overrides}
    state = _look(_llama(2, "0.32.0", remediated), progressive.View(live, canary_live, (*olds, canary_pod), _t(20)))
    rollout = state.status["rollout"]
    assert (rollout["phase"], rollout["reason"]) == ("Superseded", "Remediation")
    assert "SetMaxModelLen" in rollout["message"]
    # The repair reaches every replica: the remediated template at full count, the canary gone.
    stable = _stable_of(state)
    assert stable["spec"]["replicas"] == REPLICAS
    assert _hash(stable) not in (old, new)
    assert "--max-model-len" in stable["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "65536" in stable["spec"]["template"]["spec"]["containers"][0]["args"]
    assert state.prune == ("llama31-8b-canary",)
    assert [e.type for e in state.events if e.reason == "RolloutSuperseded"] == ["Warning"]
    halted = _conditions(state.status)["RolloutHalted"]
    assert (halted["status"], halted["reason"]) == ("False", "Superseded")
    # Over: no second look, lastKnownGood no longer held, the crash-loop watch back on the workload's own pods.
    assert not progressive.needs_look(state.status, 2)
    assert not progressive.holds_known_good(state.status, 2)
    assert watched_config(LlamaDeploymentStatus.model_validate(state.status), 2) is None
    later = _look(
        _llama(2, "0.32.0", {**state.status, "overrides": overrides}), progressive.View(_live(stable), None, (), _t(40))
    )
    assert _stable_of(later) == stable
    assert "rollout" not in later.status  # the Superseded record stays as it is
    assert _conditions(later.status)["RolloutHalted"]["reason"] == "Superseded"
    assert not later.prune


def _t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_lack_of_gpus_is_said(old_stable: dict[str, Any]) -> None:
    status, new, first = _started(old_stable)
    olds = tuple(_pod(f"old-{i}", _hash(old_stable), canary=False, ready_at=0) for i in range(REPLICAS - 1))
    pending = _pod("canary-0", new, canary=True, ready_at=None, created=1)
    pending["status"]["conditions"] = [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes: nvidia.com/gpu"}
    ]
    view = progressive.View(_live(_stable_of(first)), None, (*olds, pending), _t(5))
    state = _look(_llama(2, "0.32.0", status), view)
    assert state.status["rollout"]["reason"] == "InsufficientGPUs"
    assert "nvidia.com/gpu" in state.status["rollout"]["message"]
    assert "RolloutWaitingForGPUs" in [e.reason for e in state.events]


def test_all_at_once_and_single_replicas_roll_as_before(old_stable: dict[str, Any]) -> None:
    body = _llama(2, "0.32.0", policy="AllAtOnce")
    state = _look(body, progressive.View(old_stable, None, (), T0))
    assert "rollout" not in state.status
    assert "RolloutHalted" not in _conditions(state.status)
    assert _stable_of(state)["spec"]["replicas"] == REPLICAS
    assert "vllm:0.32.0" in _stable_of(state)["spec"]["template"]["spec"]["containers"][0]["image"]
    spec = LlamaDeployment.model_validate(_llama(1, "0.31.0")).spec
    assert policy_of(spec) == "Progressive"
    assert policy_of(spec.model_copy(update={"replicas": 1})) == "AllAtOnce"


def test_the_same_generation_rerendered_is_not_a_rollout(old_stable: dict[str, Any]) -> None:
    # A crash-loop remediation re-renders the generation the stable Deployment already runs: it rolls as before.
    same_generation = {**old_stable, "metadata": {**old_stable["metadata"]}}
    state = _look(_llama(1, "0.32.0"), progressive.View(same_generation, None, (), T0))
    assert "rollout" not in state.status


def test_a_leftover_canary_is_pruned(old_stable: dict[str, Any]) -> None:
    state = _look(_llama(1, "0.31.0"), progressive.View(old_stable, {"kind": "Deployment"}, (), T0))
    assert state.prune == ("llama31-8b-canary",)


def test_the_deadline_must_cover_the_startup_budget() -> None:
    spec = LlamaDeployment.model_validate(_llama(1, "0.31.0", progressDeadline="5m")).spec
    result = validate(_llama(1, "0.31.0", progressDeadline="5m"))
    finding = next(f for f in result.findings if f.code == "rollout_deadline_shorter_than_startup")
    assert finding.severity == "error"
    assert finding.field == "spec.rollout.progressDeadline"
    assert not result.valid
    budget = startup_budget_s(result.plan, 1)
    assert budget > 600
    assert f"{budget}s" in finding.fix
    assert validate(_llama(1, "0.31.0", progressDeadline=f"{budget}s")).valid
    four = spec.rollout.model_copy(update={"step": 4, "progress_deadline": None})
    step = check_rollout(spec.model_copy(update={"rollout": four}), None, 1)
    assert [f.code for f in step] == ["rollout_step_not_below_replicas"]
    assert check_rollout(spec.model_copy(update={"rollout": four.model_copy(update={"step": 1})}), None, 16) == []


def test_halt_and_completion_are_counted() -> None:
    before = ROLLOUTS.labels("Halted", "CrashLoop")._value.get()
    halted = {"generation": 2, "phase": "Halted", "reason": "CrashLoop", "failedAt": _at(7), "finishedAt": _at(9)}
    observe_rollout({"generation": 2, "phase": "Canary"}, halted)
    observe_rollout(halted, halted)  # no transition, not counted again
    assert ROLLOUTS.labels("Halted", "CrashLoop")._value.get() == before + 1
    assert ROLLOUT_HALT_SECONDS._sum.get() >= 2
