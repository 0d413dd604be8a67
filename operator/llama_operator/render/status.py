"""The LlamaDeployment's status from what the operator knows and sees (pure).

Inputs: the spec generation, the validation result, what the serving workload reports and the previous status.
Output: a status document (camelCase, as the CRD stores it). Conditions keep their lastTransitionTime while their
status stays the same, so recomputing an unchanged status yields an identical document (no churn, no events).
Condition types this module does not own (CrashLooping, written by crash-loop remediation) pass through untouched;
PodsReady (why the pods do not serve, health.causes) is written when the look saw the pods and passes through when
it did not. ``status.reason`` names, in one word, what most explains the phase (the printer column Reason).
``Capacity`` is planning.capacity's verdict on the cluster's GPU nodes (absent while the spec is invalid).
``RolloutHalted`` is put in place once a progressive rollout has decided (desired/rollout.py, with_rollout_halted).
``Autoscaling`` (desired.autoscaling, added by ``with_condition`` to what ``compute`` returns) says whether KEDA
scales the deployment, up to what, and why it is paused or capped (absent without spec.autoscaling).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llama_operator.planning import ValidationResult

CAPACITY = "Capacity"
# Written after the rollout's step (desired.autoscaling), which pauses autoscaling: see with_condition.
AUTOSCALING = "Autoscaling"
OWNED_TYPES = ("Validated", "Progressing", "Available", "Degraded", CAPACITY, AUTOSCALING)
CRASH_LOOPING = "CrashLooping"
PODS_READY = "PodsReady"
# A configuration becomes lastKnownGood once it has served (Available) this long: a server that comes up and
# crashes on its first requests must not become the rollback target.
KNOWN_GOOD_AFTER_S = 10
EXHAUSTED = "RemediationExhausted"
ROLLOUT_HALTED = "RolloutHalted"


@dataclass(frozen=True, slots=True)
class Rollout:
    """What the serving workload (a Deployment, or a LeaderWorkerSet for multi-node replicas) reports, reduced to what
    status needs (kubectl rollout status's rules)."""

    desired: int
    replicas: int
    updated: int
    ready: int
    available: int
    # The Deployment controller has seen the latest template (status.observedGeneration >= metadata.generation).
    observed: bool
    # Its Progressing condition reports ProgressDeadlineExceeded.
    stalled: bool

    @property
    def complete(self) -> bool:
        return (
            self.observed
            and self.updated >= self.desired
            and self.replicas <= self.updated
            and self.available >= self.updated
        )

    @classmethod
    def from_deployment(cls, deployment: dict[str, Any]) -> Rollout:
        spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
        generation = (deployment.get("metadata") or {}).get("generation", 0)
        conditions = status.get("conditions") or []
        return cls(
            desired=int(spec.get("replicas", 1)),
            replicas=int(status.get("replicas", 0)),
            updated=int(status.get("updatedReplicas", 0)),
            ready=int(status.get("readyReplicas", 0)),
            available=int(status.get("availableReplicas", 0)),
            observed=int(status.get("observedGeneration", 0)) >= int(generation),
            stalled=any(
                c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded" for c in conditions
            ),
        )

    @classmethod
    def from_leader_worker_set(cls, lws: dict[str, Any]) -> Rollout:
        """A LeaderWorkerSet's groups as replicas. LWS counts a group ready when its leader and every worker are
        (readyReplicas), and updated when all its pods run the current template (updatedReplicas); a ready group
        serves, so ready is also available. LWS has no progress deadline: it never reports a stalled rollout."""
        spec, status = lws.get("spec") or {}, lws.get("status") or {}
        generation = (lws.get("metadata") or {}).get("generation", 0)
        ready = int(status.get("readyReplicas", 0))
        return cls(
            desired=int(spec.get("replicas", 1)),
            replicas=int(status.get("replicas", 0)),
            updated=int(status.get("updatedReplicas", 0)),
            ready=ready,
            available=ready,
            observed=int(status.get("observedGeneration", 0)) >= int(generation),
            stalled=False,
        )

    @classmethod
    def from_workload(cls, workload: dict[str, Any]) -> Rollout:
        """The serving workload, whichever kind renders it: a Deployment or a LeaderWorkerSet."""
        if workload.get("kind") == "LeaderWorkerSet":
            return cls.from_leader_worker_set(workload)
        return cls.from_deployment(workload)


@dataclass(frozen=True, slots=True)
class Transition:
    """A condition that changed status: each becomes a Kubernetes Event."""

    type: str
    status: str
    reason: str
    message: str

    @property
    def warning(self) -> bool:
        bad = {
            "Validated": "False",
            "Available": "False",
            "Degraded": "True",
            "CrashLooping": "True",
            CAPACITY: "False",
        }
        return bad.get(self.type) == self.status


def _condition(
    type_: str, status: bool | str, reason: str, message: str, generation: int, old: dict[str, dict[str, Any]], now: str
) -> dict[str, Any]:
    value = status if isinstance(status, str) else "True" if status else "False"
    previous = old.get(type_)
    since = previous.get("lastTransitionTime") if previous and previous.get("status") == value else None
    return {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since or now,
        "observedGeneration": generation,
    }


def _validated(result: ValidationResult) -> tuple[bool, str, str]:
    if not result.valid:
        errors = result.errors
        listed = "; ".join(f"{f.field}: {f.code}" for f in errors[:5])
        return False, "ValidationFailed", f"{len(errors)} error finding(s), nothing deployed: {listed}"
    warnings = sum(1 for f in result.findings if f.severity == "warning")
    return True, "ValidationPassed", f"valid with {warnings} warning(s)" if warnings else "valid"


def _phase_and_rollout(
    result: ValidationResult, rollout: Rollout | None
) -> tuple[str, list[tuple[str, bool, str, str]]]:
    """The phase and the Progressing / Available / Degraded conditions."""
    if rollout is None:
        waiting = "the spec is invalid" if not result.valid else "the serving workload is being created"
        return ("Invalid" if not result.valid else "Pending"), [
            ("Progressing", result.valid, "Creating" if result.valid else "ValidationFailed", waiting),
            ("Available", False, "NotDeployed", f"no serving workload: {waiting}"),
            ("Degraded", False, "NotDeployed", "nothing is running"),
        ]
    ready = f"{rollout.ready}/{rollout.desired} replicas ready"
    available = rollout.available >= rollout.desired and rollout.complete
    progressing = not rollout.complete and not rollout.stalled
    if rollout.stalled:
        degraded = (True, "ProgressDeadlineExceeded", f"the rollout stalled: {ready}")
    elif rollout.complete and rollout.ready < rollout.desired:
        degraded = (True, "ReplicasNotReady", ready)
    else:
        degraded = (False, "AsExpected", ready)
    conditions = [
        (
            "Progressing",
            progressing,
            "RollingOut" if progressing else ("RolloutStalled" if rollout.stalled else "RolloutComplete"),
            f"{rollout.updated}/{rollout.desired} replicas updated, {ready}",
        ),
        ("Available", available, "MinimumReplicasAvailable" if available else "ReplicasUnavailable", ready),
        ("Degraded", *degraded),
    ]
    if not result.valid:
        phase = "Invalid"
    elif degraded[0]:
        phase = "Degraded"
    elif progressing:
        phase = "Progressing"
    else:
        phase = "Running"
    return phase, conditions


def compute(
    *,
    generation: int,
    result: ValidationResult,
    rollout: Rollout | None,
    old: dict[str, Any],
    now: str,
    endpoint: str,
    selector: str,
    pods_ready: tuple[bool, str, str] | None = None,
) -> dict[str, Any]:
    """The status document for this generation (old: the current status, possibly empty). Applied as a merge patch:
    fields it leaves out (remediations) keep their value. ``pods_ready``: the PodsReady condition (status, reason,
    message) when the look saw the pods."""
    old_conditions: dict[str, dict[str, Any]] = {
        str(c.get("type")): c for c in old.get("conditions") or [] if isinstance(c, dict)
    }
    valid, reason, message = _validated(result)
    phase, rollout_conditions = _phase_and_rollout(result, rollout)
    crash = old_conditions.get(CRASH_LOOPING)
    if crash is not None and crash.get("status") == "True" and result.valid:
        # Crash-loop remediation owns CrashLooping; while it is True the deployment is degraded whatever the
        # rollout says, and an exhausted remediation is final until the spec changes.
        phase = "Failed" if crash.get("reason") == EXHAUSTED else "CrashLooping"
        rollout_conditions = [
            row if row[0] != "Degraded" else ("Degraded", True, "CrashLooping", str(crash.get("message", "")))
            for row in rollout_conditions
        ]
    if pods_ready is not None:
        if not pods_ready[0]:
            # Available=False says how many; PodsReady says why.
            rollout_conditions = [
                (t, s, r, f"{m}; {PODS_READY}: {pods_ready[1]}" if t == "Available" and not s else m)
                for t, s, r, m in rollout_conditions
            ]
        rollout_conditions.append((PODS_READY, *pods_ready))
    owned: list[tuple[str, bool | str, str, str]] = [("Validated", valid, reason, message), *rollout_conditions]
    if result.capacity is not None:
        owned.append((CAPACITY, result.capacity.status, result.capacity.reason, result.capacity.message))
    conditions = [_condition(t, s, r, m, generation, old_conditions, now) for t, s, r, m in owned]
    # Owned types not written this time (a spec turned invalid) are dropped; PodsReady passes through unseen.
    mine = {row[0] for row in owned} | set(OWNED_TYPES)
    conditions += [c for t, c in old_conditions.items() if t not in mine]
    status: dict[str, Any] = {
        "phase": phase,
        "reason": summary(conditions),
        "observedGeneration": generation,
        "conditions": conditions,
        "findings": [f.as_dict() for f in result.findings],
        "replicas": rollout.replicas if rollout else 0,
        "readyReplicas": rollout.ready if rollout else 0,
        "selector": selector,
        "endpoint": endpoint,
    }
    if result.effective is not None:
        status["effective"] = result.effective.model_dump(by_alias=True, exclude_none=True)
    if result.plan is not None:
        status["plan"] = result.plan.model_dump(by_alias=True)
    good = old.get("lastKnownGood")
    available_since = next(c["lastTransitionTime"] for c in conditions if c["type"] == "Available")
    if phase == "Running" and result.effective is not None and _held(available_since, now, KNOWN_GOOD_AFTER_S):
        effective = result.effective
        # The config's fields as they are, so a rollback reads its maxModelLen rather than parse it from the args.
        current: dict[str, Any] = {"generation": generation, "image": effective.image, "args": list(effective.args)}
        if effective.max_model_len is not None:
            current["maxModelLen"] = effective.max_model_len
        recorded = {k: (good or {}).get(k) for k in current}
        good = {**current, "time": now} if recorded != current else good
    if good:
        status["lastKnownGood"] = good
    return status


def with_condition(
    status: dict[str, Any],
    old: dict[str, Any],
    condition: tuple[str, bool | str, str, str],
    generation: int,
    now: str,
) -> dict[str, Any]:
    """``status`` (as ``compute`` returns it) with one more owned condition (type, status, reason, message), its
    lastTransitionTime kept from ``old`` while its status stays."""
    old_conditions = {str(c.get("type")): c for c in old.get("conditions") or [] if isinstance(c, dict)}
    added = _condition(*condition, generation, old_conditions, now)
    kept = [c for c in status.get("conditions") or [] if c.get("type") != condition[0]]
    return {**status, "conditions": [*kept, added]}


def summary(conditions: list[dict[str, Any]]) -> str:
    """The reason that most explains the phase, for `kubectl get` (empty when nothing is wrong or pending): an
    invalid spec, then a crash loop (and where its remediation stands), then why the pods do not serve, then a
    degraded rollout, then a halted progressive rollout (why it halted), then nodes that cannot hold the spec."""
    by_type = {c.get("type"): c for c in conditions}
    worst_first = (("Validated", "False"), (CRASH_LOOPING, "True"), (PODS_READY, "False"), ("Degraded", "True"))
    for type_, bad in (*worst_first, (ROLLOUT_HALTED, "True"), (CAPACITY, "False")):
        found = by_type.get(type_)
        if found is not None and found.get("status") == bad:
            return str(found.get("reason") or "")
    return ""


def with_rollout_halted(
    status: Mapping[str, Any], record: Mapping[str, Any] | None, generation: int, now: str
) -> dict[str, Any]:
    """``status`` with the RolloutHalted condition from ``record`` (status.rollout, camelCase) and the reason it
    makes. True while the rollout of this generation is halted, with the halt's reason (CrashLoop,
    ReadinessTimeout) and message; False once it completes or moves, and once the spec changes past a halt. A
    deployment that never rolled progressively has none."""
    conditions = [c for c in status.get("conditions") or [] if isinstance(c, dict)]
    old = {str(c.get("type")): c for c in conditions}
    previous = old.get(ROLLOUT_HALTED)
    ours = isinstance(record, Mapping) and record.get("generation") == generation
    row: tuple[bool, str, str] | None
    if ours and isinstance(record, Mapping):
        phase, message = str(record.get("phase") or ""), str(record.get("message") or "")
        if phase == "Halted":
            row = (True, str(record.get("reason") or "Halted"), message)
        elif phase in ("Completed", "Superseded"):
            row = (False, phase, message)
        else:
            row = (False, "RolloutInProgress", f"{phase}: {message}")
    elif previous is None:
        return dict(status)
    elif previous.get("status") == "True":
        row = (False, "SpecChanged", f"generation {generation} replaces the halted change")
    else:
        row = (False, str(previous.get("reason") or ""), str(previous.get("message") or ""))
    condition = _condition(ROLLOUT_HALTED, *row, generation, old, now)
    updated = [*(c for c in conditions if c.get("type") != ROLLOUT_HALTED), condition]
    return {**status, "conditions": updated, "reason": summary(updated)}


def _held(since: str, now: str, seconds: int) -> bool:
    try:
        start, current = (dt.datetime.fromisoformat(v.replace("Z", "+00:00")) for v in (since, now))
    except ValueError:
        return False
    return (current - start).total_seconds() >= seconds


def known_good_pending(status: dict[str, Any], generation: int) -> bool:
    """Running, but lastKnownGood is not yet the configuration that runs: look again once it has served a while."""
    good, effective = status.get("lastKnownGood") or {}, status.get("effective") or {}
    return status.get("phase") == "Running" and (
        good.get("generation") != generation or good.get("args") != effective.get("args")
    )


def transitions(old: dict[str, Any], new: dict[str, Any]) -> list[Transition]:
    """Conditions whose status changed between two status documents (new ones included)."""
    before = {c.get("type"): c.get("status") for c in old.get("conditions") or [] if isinstance(c, dict)}
    return [
        Transition(c["type"], c["status"], c["reason"], c["message"])
        for c in new.get("conditions") or []
        if before.get(c["type"]) != c["status"]
    ]
