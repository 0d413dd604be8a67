"""The desired state of one look: the status it writes is the one the workload will have once its children are
applied (a look computes status before the writer applies)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from llama_operator.api import LlamaDeployment, parse_status
from llama_operator.desired import Inputs, desired_state
from llama_operator.handlers import rechecks
from llama_operator.health import check
from llama_operator.health.detect import CrashLoopObservation
from llama_operator.knowledge import load_knowledge

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "llama31-8b-h100.yaml"
INPUTS = Inputs(load_knowledge())
NOW = datetime(2026, 9, 1, 12, 0, tzinfo=UTC)


def _llama(generation: int = 1) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    body["metadata"].update(namespace="ai", uid="u-1", generation=generation)
    return body


def _running(body: dict[str, Any]) -> dict[str, Any]:
    """Its Deployment as applied by the last reconcile, with its replicas ready."""
    state = desired_state(body, INPUTS, workload=None, now=NOW, apply=True)
    assert state is not None
    deployment = next(m for m in state.manifests if m["kind"] == "Deployment")
    replicas = deployment["spec"]["replicas"]
    counts = {"replicas": replicas, "updatedReplicas": replicas, "readyReplicas": replicas}
    return {
        **deployment,
        "metadata": {**deployment["metadata"], "generation": 1},
        "status": {"observedGeneration": 1, **counts, "availableReplicas": replicas},
    }


def test_a_new_deployment_is_progressing_as_its_controller_has_not_seen_it() -> None:
    state = desired_state(_llama(), INPUTS, workload=None, now=NOW, apply=True)
    assert state is not None
    assert state.phase == "Progressing"
    assert state.status["readyReplicas"] == 0
    assert [m["kind"] for m in state.manifests][:2] == ["Service", "Deployment"]


def test_an_unchanged_workload_keeps_its_rollout_and_a_changed_one_rolls_out() -> None:
    body = _llama()
    workload = _running(body)
    same = desired_state(body, INPUTS, workload=workload, now=NOW, apply=True)
    assert same is not None
    assert same.phase == "Running"
    changed = {**body, "metadata": {**body["metadata"], "generation": 2}}
    changed["spec"] = {**body["spec"], "engine": {**body["spec"]["engine"], "gpuMemoryUtilization": 0.85}}
    rolling = desired_state(changed, INPUTS, workload=workload, now=NOW, apply=True)
    assert rolling is not None
    assert rolling.phase == "Progressing"
    assert rolling.status["readyReplicas"] == workload["status"]["readyReplicas"]  # the old pods still serve


def test_a_look_that_only_refreshes_status_applies_nothing() -> None:
    body = _llama()
    state = desired_state(body, INPUTS, workload=_running(body), now=NOW, apply=False)
    assert state is not None
    assert state.manifests == ()
    assert state.phase == "Running"


def test_a_workload_of_the_same_name_made_by_someone_else_is_still_applied_over() -> None:
    """A Deployment the operator did not make (no config hash, its own labels): the look still renders the children,
    and the API server's answer to applying them (a 422 on the immutable selector) is the writer's to report."""
    foreign = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "llama31-8b", "namespace": "ai"},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "other"}},
            "template": {"metadata": {"labels": {"app": "other"}}, "spec": {"containers": []}},
        },
        "status": {},
    }
    state = desired_state(_llama(), INPUTS, workload=foreign, now=NOW, apply=True)
    assert state is not None
    assert "Deployment" in [m["kind"] for m in state.manifests]
    assert state.phase == "Progressing"


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, as the API server applies the status patch: null removes, objects merge, the rest replaces."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = _merge_patch(merged.get(key), value)
    return merged


def _healthy_look(body: dict[str, Any], workload: dict[str, Any]) -> Any:
    status = parse_status(body)
    observation = CrashLoopObservation(
        crash_looping=False, source="PodStatus", healthy_since=NOW - timedelta(minutes=5), pods=1
    )
    spec = LlamaDeployment.model_validate(body).spec
    generation = body["metadata"]["generation"]
    checked = check(
        spec=spec, generation=generation, status=status, observation=observation, now=NOW, knowledge=load_knowledge()
    )
    return desired_state(body, INPUTS, workload=workload, now=NOW, apply=False, check=checked)


def test_a_recovered_crash_loop_leaves_status_and_is_not_recovered_again() -> None:
    body = _llama()
    workload = _running(body)
    loop = {"source": "PodStatus", "signature": "unknown", "restarts": 2, "firstCrashTime": "2026-09-01T11:50:00Z"}
    body["status"] = {
        "phase": "CrashLooping",
        "observedGeneration": 1,
        "remediation": {"generation": 1, "attempts": 0, "exhausted": False, "crashLoop": loop},
        "conditions": [{"type": "CrashLooping", "status": "True", "reason": "CrashLoopDetected", "message": "x"}],
    }
    recovered = _healthy_look(body, workload)
    assert recovered is not None
    assert [e.reason for e in recovered.events][:1] == ["Recovered"]
    written = _merge_patch(body["status"], recovered.status)
    assert "crashLoop" not in written["remediation"]  # a merge patch removes only what it names null
    assert rechecks.CRASH_LOOP not in rechecks.needs(written, 1)  # no second look every few seconds from now on
    again = _healthy_look({**body, "status": written}, workload)
    assert again is not None
    assert "Recovered" not in [e.reason for e in again.events]


def test_a_new_generation_starts_remediation_afresh_in_status() -> None:
    body = _llama(generation=2)
    workload = _running(body)
    stale = {"source": "PodStatus", "signature": "unknown", "restarts": 2, "firstCrashTime": "2026-09-01T11:50:00Z"}
    body["status"] = {
        "phase": "CrashLooping",
        "observedGeneration": 1,
        "remediation": {"generation": 1, "attempts": 1, "lastActionTime": "2026-09-01T11:51:00Z", "crashLoop": stale},
    }
    state = _healthy_look(body, workload)
    assert state is not None
    written = _merge_patch(body["status"], state.status)
    assert written["remediation"] == {"generation": 2, "attempts": 0, "exhausted": False}


def _pending_pod(workload: dict[str, Any], message: str) -> dict[str, Any]:
    annotations = workload["spec"]["template"]["metadata"]["annotations"]
    scheduled = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
    return {
        "metadata": {"name": "llama31-8b-abc", "annotations": annotations},
        "status": {"phase": "Pending", "conditions": [scheduled]},
    }


def test_the_pods_cause_is_a_condition_with_an_event_for_each_transition() -> None:
    body = _llama()
    workload = _running(body)
    workload["status"] = {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1}
    message = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    pending = [_pending_pod(workload, message)]
    first = desired_state(body, INPUTS, workload=workload, now=NOW, apply=False, pods=pending)
    assert first is not None
    pods_ready = next(c for c in first.status["conditions"] if c["type"] == "PodsReady")
    assert (pods_ready["status"], pods_ready["reason"]) == ("False", "Unschedulable")
    assert message in pods_ready["message"]
    assert first.status["reason"] == "Unschedulable"
    assert ("Warning", "Unschedulable") in {(e.type, e.reason) for e in first.events}

    # Scheduled now, the image cannot be pulled: the same status, another reason, another Event.
    seen = {**body, "status": first.status}
    pulling = dict(pending[0])
    pulling["status"] = {
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "True"}],
        "containerStatuses": [{"name": "vllm", "state": {"waiting": {"reason": "ErrImagePull", "message": "nope"}}}],
    }
    second = desired_state(seen, INPUTS, workload=workload, now=NOW, apply=False, pods=[pulling])
    assert second is not None
    assert [(e.type, e.reason) for e in second.events] == [("Warning", "ImagePullFailed")]
    assert second.status["reason"] == "ImagePullFailed"
    again = desired_state(
        {**body, "status": second.status}, INPUTS, workload=workload, now=NOW, apply=False, pods=[pulling]
    )
    assert again is not None
    assert again.events == ()
    assert not again.changed

    # Without the pods (the index not there yet) the condition stays as it was.
    blind = desired_state({**body, "status": second.status}, INPUTS, workload=workload, now=NOW, apply=False)
    assert blind is not None
    assert next(c for c in blind.status["conditions"] if c["type"] == "PodsReady")["reason"] == "ImagePullFailed"
