"""The desired state of one look at a LlamaDeployment: from the object (and the health decision when a crash-loop
check ran), the children to apply, the status to write, the Events to post and what the metrics record (pure).

The edges read what this needs (the object, its serving workload, the cluster's inputs) and hand the result to
one writer (handlers.writer), which does the I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from llama_operator.desired.plan import Inputs, Plan, owner_of, plan
from llama_operator.desired.refusal import refusal_finding, with_refusal
from llama_operator.health import Check, Event, causes, with_condition
from llama_operator.planning import ValidationResult
from llama_operator.render import Owner
from llama_operator.render import status as status_rules
from llama_operator.render.children import WORKLOAD_KINDS, workload_config_hash, workload_kind
from llama_operator.render.labels import SPEC_GENERATION_ANNOTATION, selector_labels
from llama_operator.render.service import endpoint


@dataclasses.dataclass(frozen=True, slots=True)
class Desired:
    """Everything one look decides. ``manifests`` are applied in order (empty: nothing is applied); ``status`` is
    the merge patch to write when ``changed``; ``events`` are posted on ``body``."""

    owner: Owner
    body: Mapping[str, Any]
    planned: Plan
    apply: bool  # this look applies the children (reconcile, a remediation's re-render)
    manifests: tuple[dict[str, Any], ...]
    status: dict[str, Any]
    changed: bool
    events: tuple[Event, ...]
    check: Check | None
    # What the status was computed from, kept for a refusal of a child (refused).
    seen: dict[str, Any]
    workload: dict[str, Any] | None
    now: str
    # Deployments of this LlamaDeployment to delete after the apply (a progressive rollout's canary).
    prune: tuple[str, ...] = ()
    pods_ready: tuple[bool, str, str] | None = None
    # Delete the ScaledObject of this LlamaDeployment (spec.autoscaling was removed): desired.autoscaling.
    prune_scaled_object: bool = False

    @property
    def phase(self) -> str:
        phase: str = self.status["phase"]
        return phase

    @property
    def findings(self) -> list[tuple[str, str]]:
        """(code, severity) of each finding, for the metrics."""
        return [(f["code"], f["severity"]) for f in self.status.get("findings") or []]


def _rfc3339(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _remediation_patch(check: Check, old: Mapping[str, Any]) -> dict[str, Any]:
    decision = check.decision
    patch = {**decision.status_patch(), "conditions": with_condition(old.get("conditions") or [], decision.condition)}
    # The status is written as a merge patch, which keeps keys it does not name: a field the new state no longer
    # has (the crash loop once recovered, an older generation's lastActionTime) is removed by naming it null.
    # Otherwise the loop stayed in status, its deployment was rechecked every few seconds for good and each
    # recheck declared it Recovered again.
    before = old.get("remediation") or {}
    patch["remediation"] = {**{key: None for key in before if key not in patch["remediation"]}, **patch["remediation"]}
    if decision.phase:
        # With the condition, so no reader sees CrashLooping=True beside phase Running.
        patch["phase"] = decision.phase
    return patch


def _rollout(
    workload: dict[str, Any] | None, generation: int, valid: bool, applied: dict[str, Any] | None
) -> status_rules.Rollout | None:
    """The rollout as it stands once ``applied`` (the workload manifest about to be applied, if any) is: a new or
    changed template is not observed yet by its controller."""
    if applied is not None:
        desired = status_rules.Rollout.from_workload(applied).desired
        if workload is None or workload.get("kind") != applied["kind"]:
            # Created now: nothing runs yet and its controller has not seen it.
            return dataclasses.replace(status_rules.Rollout.from_workload(applied), observed=False)
        rollout = status_rules.Rollout.from_workload(workload)
        # Applying stamps this generation on it: a changed template or replica count is left for its controller.
        same = workload_config_hash([workload]) == workload_config_hash([applied]) and desired == rollout.desired
        return rollout if same else dataclasses.replace(rollout, desired=desired, observed=False)
    if workload is None:
        return None
    rollout = status_rules.Rollout.from_workload(workload)
    rendered = int(((workload.get("metadata") or {}).get("annotations") or {}).get(SPEC_GENERATION_ANNOTATION, 0))
    if valid and rendered < generation:
        # The workload still holds an older generation's template: the new one is about to be applied.
        return dataclasses.replace(rollout, observed=False)
    return rollout


def _status(
    owner: Owner,
    result: ValidationResult,
    rollout: status_rules.Rollout | None,
    seen: dict[str, Any],
    now: str,
    pods_ready: tuple[bool, str, str] | None = None,
) -> dict[str, Any]:
    return status_rules.compute(
        generation=owner.generation,
        result=result,
        rollout=rollout,
        old=seen,
        now=now,
        endpoint=endpoint(owner),
        selector=",".join(f"{k}={v}" for k, v in selector_labels(owner.name).items()),
        pods_ready=pods_ready,
    )


def _changed(old: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    return any(old.get(key) != value for key, value in status.items())


def _events(check: Check | None, seen: dict[str, Any], computed: dict[str, Any]) -> tuple[Event, ...]:
    """The crash-loop decision's Events, then one per condition transition (PodsReady's: to or from a failure
    reason as well)."""
    decided = check.decision.events if check is not None else ()
    changes = [*status_rules.transitions(seen, computed), *causes.reason_transitions(seen, computed)]
    transitions = tuple(
        Event("Warning" if causes.warning(t) else "Normal", t.reason, f"{t.type}={t.status}: {t.message}")
        for t in changes
    )
    return (*decided, *transitions)


def _pods_ready(
    pods: Sequence[Mapping[str, Any]] | None, workload: Mapping[str, Any] | None, now: datetime
) -> tuple[bool, str, str] | None:
    """The PodsReady condition from the pods (None when the look has none: the condition is left as it is)."""
    return causes.condition(causes.readiness(pods, workload, now)) if pods is not None else None


def desired_state(
    body: Mapping[str, Any],
    inputs: Inputs,
    *,
    workload: dict[str, Any] | None,
    now: datetime,
    apply: bool,
    check: Check | None = None,
    child_kind: str | None = None,
    pods: Sequence[Mapping[str, Any]] | None = None,
) -> Desired | None:
    """The desired state of ``body`` (read under its lock) with ``workload`` its serving workload as read.

    ``apply``: this look applies the children (a look that only refreshes status keeps a refusal of this
    generation). ``check``: the crash-loop check's decision, written with the rest and planned with its overrides.
    None when nothing is to be written: ``child_kind`` names a workload kind the spec no longer renders (that one is
    being pruned, its status is not ours to show), or a crash-loop check of a spec that does not run. ``pods``: the
    workload's pods as the operator's index holds them, for the PodsReady condition (None: left as it is)."""
    old = dict(body.get("status") or {})
    remediation = _remediation_patch(check, old) if check is not None else {}
    seen = {**old, **remediation}
    looked = {**body, "status": seen}
    planned = plan(looked, inputs)
    if check is not None and (planned.resource is None or not planned.result.valid):
        return None
    effective = planned.result.effective
    renders = effective is None or not planned.manifests or workload_kind(effective) == child_kind
    if child_kind is not None and not renders:
        return None
    result = planned.result if apply else with_refusal(planned.result, looked)
    manifests = tuple(planned.manifests) if apply else ()
    owner = owner_of(body)
    applied = next((m for m in manifests if m["kind"] in WORKLOAD_KINDS), None)
    moment = _rfc3339(now)
    rollout = _rollout(workload, owner.generation, result.valid, applied)
    pods_ready = _pods_ready(pods, workload, now)
    computed = _status(owner, result, rollout, seen, moment, pods_ready)
    status = {**remediation, **computed}
    return Desired(
        owner=owner,
        body=body,
        planned=planned,
        apply=apply,
        manifests=manifests,
        status=status,
        changed=_changed(old, status),
        events=_events(check, seen, computed),
        check=check,
        seen=seen,
        workload=workload,
        now=moment,
        pods_ready=pods_ready,
    )


def refused(state: Desired, kind: str, reason: str) -> Desired:
    """``state`` after the API server refused its child of ``kind``: nothing more is applied, status says why with
    an error finding that holds for this generation, and the workload stays as it was read."""
    result = state.planned.result.refused(refusal_finding(kind, reason))
    rollout = _rollout(state.workload, state.owner.generation, result.valid, None)
    computed = _status(state.owner, result, rollout, state.seen, state.now, state.pods_ready)
    status = {**{k: v for k, v in state.status.items() if k not in computed}, **computed}
    return dataclasses.replace(
        state,
        manifests=(),
        status=status,
        changed=_changed(dict(state.body.get("status") or {}), status),
        events=_events(state.check, state.seen, computed),
    )


def with_manifests(state: Desired, manifests: tuple[dict[str, Any], ...], prune: tuple[str, ...]) -> Desired:
    """``state`` applying ``manifests`` instead of the rendered ones (a progressive rollout's stable Deployment at
    its running template and a canary), its status computed from the workload that is applied."""
    applied = next(
        (m for m in manifests if m["kind"] in WORKLOAD_KINDS and m["metadata"]["name"] == state.owner.name), None
    )
    result = state.planned.result
    rollout = _rollout(state.workload, state.owner.generation, result.valid, applied)
    computed = _status(state.owner, result, rollout, state.seen, state.now, state.pods_ready)
    status = {**{k: v for k, v in state.status.items() if k not in computed}, **computed}
    return dataclasses.replace(
        state,
        manifests=manifests,
        prune=prune,
        status=status,
        changed=_changed(dict(state.body.get("status") or {}), status),
        events=_events(state.check, state.seen, computed),
    )
