"""Progressive rollout of a LlamaDeployment (pure): which replicas run the new configuration, when a step has passed
or failed, and what status and Events say so. Single-node replicas roll here with a canary Deployment; multi-node
replicas (a LeaderWorkerSet) with its own partition (rollout_groups); both are judged alike (rollout_pods).

A changed pod template of a deployment with more than one replica is not applied to its Deployment at once.
GPUs are scarce, so no step ever needs more GPUs than the deployment holds (no surge):

1. Canary: the stable Deployment (``<name>``) keeps its running template and is scaled down by ``step``; the
   canary Deployment (``<name>-canary``, the new template) is scaled up by as many replicas as the stable one's
   pods have gone. Its pods are judged: a crash loop (health.detect, the crash-loop watch's own detection), or a
   pod not ready within the progress deadline (the startup budget by default), halts the rollout; all ready for
   the stability window promotes it.
2. Promoting, step by step: the stable Deployment takes the new template at ``replicas - step`` with
   ``maxUnavailable = step``, ``maxSurge = 0`` and ``minReadySeconds`` = the window, so its own rolling update moves
   ``step`` pods at a time and holds each step for the window; every pod of the new configuration is judged as the
   canary's. Once it has rolled, the canary is removed and the stable Deployment is scaled back up by as many
   replicas as the canary's pods have gone. Then Completed.

Halted: the canary is removed and the stable Deployment takes the previous template again (kept in an annotation
once it has moved on), scaled back to full count as the canary's pods go. The spec generation stays halted until
the spec changes.

The stable Deployment's running template is the previous configuration: during the canary it is applied as read,
so its pods are never restarted. A rollout starts only for a new spec generation: a crash-loop remediation's
re-render of the same generation rolls as before (it repairs replicas that already crash).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from llama_operator.api.rollout import RolloutStatus
from llama_operator.desired import rollout_groups as groups
from llama_operator.desired.rollout_pods import (
    PREVIOUS_TEMPLATE_ANNOTATION,
    Judge,
    alive,
    compact,
    halted_record,
    judge_of,
    meta,
    pod_hash,
    ready_since,
    template_hash,
    unschedulable,
    workload_hash,
)
from llama_operator.desired.rollout_pods import (
    View as View,
)
from llama_operator.desired.state import Desired, with_manifests
from llama_operator.health import Event
from llama_operator.health.policy import rfc3339
from llama_operator.planning.rollout import policy_of
from llama_operator.render import status as status_rules
from llama_operator.render.labels import SPEC_GENERATION_ANNOTATION

CANARY_SUFFIX = "-canary"
# Canary pods carry this label (and their Deployment's selector): the stable Deployment's pods lack it.
TRACK_LABEL = "llamaops.dev/track"
CANARY = "canary"
UNFINISHED = ("Canary", "Promoting")
# A rollout over: the rendered workload applies as is (a superseded one's re-render rolls as a remediation does).
OVER = ("Completed", "Superseded")
GROUPS = "LeaderWorkerSet"
ROLLED_KINDS = ("Deployment", GROUPS)
EVENT_REASONS = {
    "Started": ("Normal", "RolloutStarted"),
    "Promoted": ("Normal", "RolloutPromoted"),
    "Completed": ("Normal", "RolloutCompleted"),
    "Remediation": ("Warning", "RolloutSuperseded"),
    "InsufficientGPUs": ("Warning", "RolloutWaitingForGPUs"),
    "CrashLoop": ("Warning", "RolloutHalted"),
    "ReadinessTimeout": ("Warning", "RolloutHalted"),
    "MetricRegression": ("Warning", "RolloutHalted"),
}


def canary_name(name: str) -> str:
    return f"{name}{CANARY_SUFFIX}"


def _is_canary(pod: Mapping[str, Any]) -> bool:
    return (meta(pod).get("labels") or {}).get(TRACK_LABEL) == CANARY


def canary_manifest(stable: Mapping[str, Any], replicas: int) -> dict[str, Any]:
    """The canary Deployment: the stable manifest with the new template, its own name, and a selector of its own."""
    canary = copy.deepcopy(dict(stable))
    canary["metadata"]["name"] = canary_name(str(stable["metadata"]["name"]))
    canary["metadata"]["labels"] = {**canary["metadata"]["labels"], TRACK_LABEL: CANARY}
    spec = canary["spec"]
    spec["replicas"] = replicas
    spec["selector"] = {"matchLabels": {**spec["selector"]["matchLabels"], TRACK_LABEL: CANARY}}
    template_meta = spec["template"]["metadata"]
    template_meta["labels"] = {**template_meta["labels"], TRACK_LABEL: CANARY}
    return canary


def _stable_manifest(
    applied: Mapping[str, Any],
    template: Mapping[str, Any] | None,
    replicas: int,
    pace: tuple[int, int] | None = None,
) -> dict[str, Any]:
    stable = copy.deepcopy(dict(applied))
    if pace is not None:
        stable["spec"]["minReadySeconds"] = pace[0]
        stable["spec"]["strategy"] = {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 0, "maxUnavailable": pace[1]},
        }
    if template is not None:
        running = copy.deepcopy(dict(template))
        # As read, with the API server's defaults (applied back unchanged, so its pods stay); a null creation
        # time is no field to apply.
        running["metadata"] = {k: v for k, v in (running.get("metadata") or {}).items() if k != "creationTimestamp"}
        stable["spec"]["template"] = running
    stable["spec"]["replicas"] = replicas
    return stable


def _rolled(live: Mapping[str, Any] | None, config_hash: str, replicas: int) -> bool:
    """The stable Deployment runs ``replicas`` pods of ``config_hash``, all ready, and nothing older."""
    if live is None or workload_hash(live) != config_hash:
        return False
    status = live.get("status") or {}
    return (
        int(status.get("observedGeneration") or 0) >= int(meta(live).get("generation") or 0)
        and int(status.get("updatedReplicas") or 0) == replicas
        and int(status.get("replicas") or 0) == replicas
        and int(status.get("readyReplicas") or 0) >= replicas
        # Available: ready for minReadySeconds, so the last step has been held for the window too.
        and int(status.get("availableReplicas") or 0) >= replicas
    )


def _starts(state: Desired, live: Mapping[str, Any] | None, new_hash: str | None) -> bool:
    """A new spec generation changes the running template of a Progressive deployment."""
    effective = state.planned.result.effective
    resource = state.planned.resource
    if resource is None or effective is None or live is None or new_hash is None:
        return False
    if policy_of(resource.spec) != "Progressive":
        return False
    rendered = int((meta(live).get("annotations") or {}).get(SPEC_GENERATION_ANNOTATION, 0))
    live_hash = workload_hash(live)
    return live_hash is not None and live_hash != new_hash and rendered < state.owner.generation


def _current(state: Desired) -> RolloutStatus | None:
    record = state.seen.get("rollout")
    if not isinstance(record, Mapping) or record.get("generation") != state.owner.generation:
        return None
    try:
        return RolloutStatus.model_validate(record)
    except ValueError:
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class _Step:
    record: RolloutStatus
    stable_replicas: int
    stable_template: Mapping[str, Any] | None  # None: the rendered (new) template
    canary_replicas: int | None  # None: no canary (removed)
    # While the rest move: the stable Deployment's minReadySeconds (the stability window) and maxUnavailable (the
    # step), so its own rolling update moves ``step`` replicas at a time and holds each step for the window.
    pace: tuple[int, int] | None = None


def _canary_step(
    record: RolloutStatus, judge: Judge, view: View, previous: Mapping[str, Any] | None, new_hash: str
) -> _Step:
    total, step = judge.total, judge.step
    ours = [p for p in view.pods if _is_canary(p) and pod_hash(p) == new_hash]
    old = [p for p in view.pods if not _is_canary(p) and pod_hash(p) == record.old_config_hash]
    now = view.now
    failure = judge.failure(ours, now)
    if failure is not None:
        return _halt(record, view, previous, total, *failure)
    # The metric analysis joins the verdict here: a regression of vLLM's error rate or latency halts the rollout.
    if view.analysis is not None and view.analysis.outcome == "Fail":
        return _halt(record, view, previous, total, "MetricRegression", f"canary {view.analysis.message}", now)
    # No surge: the canary grows only by the stable pods that have gone (terminating ones still hold GPUs).
    canary = max(0, min(step, total - len(old)))
    ready = [since for since in (ready_since(p) for p in ours) if since is not None]
    window = judge.window_s
    reason, message = "Started", f"step 1 of {judge.steps}: moving {step} of {total} replicas to the new configuration"
    waiting = unschedulable(ours)
    if waiting is not None:
        reason, message = "InsufficientGPUs", f"step 1 cannot proceed for lack of GPUs: {waiting}"
    elif canary == step and len(ready) >= step:
        held = (now - max(ready)).total_seconds()
        if held >= window:
            promoted = record.model_copy(
                update={
                    "phase": "Promoting",
                    "verdict": "Passed",
                    "step": 2,
                    "steps": judge.steps,
                    "reason": "Promoted",
                    "old_replicas": total - step,
                    "new_replicas": step,
                }
            )
            return _promote(promoted, judge, view, previous, new_hash)
        reason, message = "Holding", f"step 1 of {judge.steps}: the canary is ready; held {int(held)} of {window} s"
    updated = record.model_copy(
        update={
            "reason": reason,
            "message": message,
            "old_replicas": total - step,
            "new_replicas": canary,
            "steps": judge.steps,
        }
    )
    return _Step(updated, total - step, previous, canary)


def _analysed(view: View) -> str:
    return f"; {view.analysis.message}" if view.analysis is not None else ""


def _halt(
    record: RolloutStatus,
    view: View,
    previous: Mapping[str, Any] | None,
    total: int,
    reason: str,
    message: str,
    failed: datetime,
) -> _Step:
    """Back to the previous configuration: the canary goes, the stable Deployment takes the previous template (its
    replicas moved in earlier steps roll back) and is scaled back up as the canary's pods go."""
    canary = sum(1 for p in view.pods if _is_canary(p))
    # Every pod still on the new configuration, going or not: a look is due until they are gone.
    left = sum(1 for p in view.pods if pod_hash(p) == record.new_config_hash)
    halted = halted_record(record, view.now, total, left, reason, message, failed)
    return _Step(halted, total - canary, previous, None)


def _promote(
    record: RolloutStatus, judge: Judge, view: View, previous: Mapping[str, Any] | None, new_hash: str
) -> _Step:
    total, step = judge.total, judge.step
    stable_new = [p for p in view.pods if not _is_canary(p) and pod_hash(p) == new_hash]
    failure = judge.failure([p for p in view.pods if pod_hash(p) == new_hash], view.now)
    if failure is not None:
        return _halt(record, view, previous, total, *failure)
    pace = (judge.window_s, step)
    if view.canary is not None and not _rolled(view.stable, new_hash, total - step):
        # The stable Deployment moves ``step`` pods at a time, each step held for the window (minReadySeconds):
        # count those still on the previous configuration.
        old = sum(1 for p in view.pods if not _is_canary(p) and pod_hash(p) == record.old_config_hash and alive(p))
        old = min(old, total - step)
        moved = total - step - old
        number = max(record.step, 1 + max(1, -(-moved // step)))
        reason = "Promoting"
        message = f"step {number} of {judge.steps}: {total - old} of {total} replicas move to the new configuration"
        waiting = unschedulable(stable_new)
        ready = [since for since in (ready_since(p) for p in stable_new) if since is not None]
        if waiting is not None:
            reason, message = "InsufficientGPUs", f"step {number} cannot proceed for lack of GPUs: {waiting}"
        elif ready and len(ready) >= moved:
            held = int((view.now - max(ready)).total_seconds())
            message = f"step {number} of {judge.steps}: ready; held {min(held, judge.window_s)} of {judge.window_s} s"
            reason = "Holding"
        elif number == 2:
            served = f"the canary served {judge.window_s} s without a crash: the rest follow{_analysed(view)}"
            reason, message = "Promoted", f"{message}; {served}"
        updated = record.model_copy(
            update={
                "reason": reason,
                "message": message,
                "step": number,
                "old_replicas": old,
                "new_replicas": total - old,
            }
        )
        return _Step(updated, total - step, None, step, pace)
    # The stable Deployment has rolled and held its last step: remove the canary, and give its replicas back as its
    # pods go.
    left = sum(1 for p in view.pods if _is_canary(p))
    if left:
        updated = record.model_copy(
            update={
                "step": judge.steps,
                "old_replicas": 0,
                "new_replicas": total,
                "message": f"the rest run the new configuration; {left} canary pod(s) still to go",
            }
        )
        return _Step(updated, total - left, None, None)
    completed = record.model_copy(
        update={
            "phase": "Completed",
            "reason": "Completed",
            "step": judge.steps,
            "message": f"all {total} replicas run the new configuration, in {judge.steps} steps",
            "old_replicas": 0,
            "new_replicas": total,
            "finished_at": rfc3339(view.now),
        }
    )
    return _Step(completed, total, None, None)


def _previous_template(live: Mapping[str, Any], record: RolloutStatus) -> Mapping[str, Any] | None:
    """The previous configuration's pod template: the stable Deployment's own while it runs it, else the copy kept
    in its annotation once the rest have taken the new one."""
    kept = (meta(live).get("annotations") or {}).get(PREVIOUS_TEMPLATE_ANNOTATION)
    if kept:
        try:
            template = json.loads(kept)
        except ValueError:
            template = None
        if isinstance(template, dict) and template_hash(template) == record.old_config_hash:
            return template
    template = (live.get("spec") or {}).get("template")
    if isinstance(template, Mapping) and template_hash(template) == record.old_config_hash:
        return template
    return None


def _events(before: Mapping[str, Any] | None, after: RolloutStatus) -> tuple[Event, ...]:
    """An Event per transition (RolloutStarted, RolloutPromoted, ...) and one per later step (RolloutStep)."""
    same = before is not None and before.get("generation") == after.generation
    events = []
    if not (same and before is not None and before.get("reason") == after.reason):
        kind, reason = EVENT_REASONS.get(after.reason, ("", ""))
        if reason:
            type_: Any = kind
            events.append(Event(type_, reason, f"generation {after.generation}: {after.message}"))
    stepped = not same or before is None or int(before.get("step") or 0) < after.step
    if after.phase == "Promoting" and after.step > 2 and stepped:
        message = f"generation {after.generation}: {after.message} ({after.old_replicas} old, {after.new_replicas} new)"
        events.append(Event("Normal", "RolloutStep", message))
    return tuple(events)


def steer(state: Desired, view: View) -> Desired:
    """``state`` with its rollout applied: the stable and canary Deployments, the canary pruned, status.rollout, the
    RolloutHalted condition and its Events. Unchanged for a deployment that never rolled progressively."""
    return _with_halted_condition(_steer(state, view))


def _with_halted_condition(state: Desired) -> Desired:
    record = state.status.get("rollout", state.seen.get("rollout"))
    status = status_rules.with_rollout_halted(
        state.status, record if isinstance(record, Mapping) else None, state.owner.generation, state.now
    )
    if status == state.status:
        return state
    changed = any((state.body.get("status") or {}).get(k) != v for k, v in status.items())
    return dataclasses.replace(state, status=status, changed=changed)


def _steer(state: Desired, view: View) -> Desired:
    record = _current(state)
    stable = next(
        (m for m in state.manifests if m["kind"] in ROLLED_KINDS and m["metadata"]["name"] == state.owner.name), None
    )
    resource = state.planned.resource
    if not state.apply or stable is None or resource is None:
        return pinned(state, record)
    new_hash = workload_hash(stable)
    live = view.stable if (view.stable or {}).get("kind") == stable["kind"] else None
    if record is None and _starts(state, live, new_hash):
        assert live is not None
        assert new_hash is not None
        record = RolloutStatus(
            generation=state.owner.generation,
            phase="Canary",
            replicas=resource.spec.replicas,
            old_config_hash=workload_hash(live) or "",
            new_config_hash=new_hash,
            started_at=rfc3339(view.now),
            reason="Started",
        )
    if record is not None and record.phase not in OVER and new_hash is not None and new_hash != record.new_config_hash:
        # The same generation re-rendered (a crash-loop remediation's overrides): the repair reaches every replica
        # as a remediation's does, and the rollout ends.
        return _superseded(state, record, view)
    if record is None or record.phase in OVER or live is None or new_hash is None:
        # Nothing to roll progressively: the children as rendered, and no canary left behind.
        prune = (canary_name(state.owner.name),) if view.canary is not None else ()
        return dataclasses.replace(state, prune=prune)
    judge = judge_of(state)
    if stable["kind"] == GROUPS:
        previous = groups.previous_template(live, record)
        # Unknown (an annotation lost): a halt keeps what runs rather than the new template.
        kept = previous if previous is not None else (live.get("spec") or {}).get("leaderWorkerTemplate")
        moved_groups = groups.step_groups(record, judge, view, new_hash)
        manifest = groups.group_manifest(stable, moved_groups, previous, kept)
        applied = [manifest if m is stable else m for m in state.manifests]
        prune = (canary_name(state.owner.name),) if view.canary is not None else ()
        return _written(state, applied, prune, moved_groups.record)
    previous = _previous_template(live, record)
    # Unknown (an annotation lost): the stable Deployment keeps what it runs rather than take the new template.
    kept = previous if previous is not None else (live.get("spec") or {}).get("template")
    if record.phase == "Canary":
        moved = _canary_step(record, judge, view, kept, new_hash)
    elif record.phase == "Promoting":
        moved = _promote(record, judge, view, kept, new_hash)
    else:
        moved = _halt(record, view, kept, judge.total, record.reason, record.message, view.now)
    manifests: list[dict[str, Any]] = []
    for manifest in state.manifests:
        if manifest is stable:
            applied_stable = _stable_manifest(stable, moved.stable_template, moved.stable_replicas, moved.pace)
            if previous is not None and moved.record.phase not in OVER:
                # Kept while the rollout may still return to it (the stable Deployment's own template moves on).
                applied_stable["metadata"]["annotations"][PREVIOUS_TEMPLATE_ANNOTATION] = compact(previous)
            manifests.append(applied_stable)
            if moved.canary_replicas is not None:
                manifests.append(canary_manifest(stable, moved.canary_replicas))
        else:
            manifests.append(manifest)
    prune = (canary_name(state.owner.name),) if moved.canary_replicas is None and view.canary is not None else ()
    return _written(state, manifests, prune, moved.record)


def _superseded(state: Desired, record: RolloutStatus, view: View) -> Desired:
    """A remediation re-rendered this generation mid-rollout (or halted): the canary goes, the stable workload takes
    the remediated template at full count through its own rolling update (no surge), and the rollout is over."""
    overrides = state.seen.get("overrides") or {}
    action = overrides.get("action") if isinstance(overrides, Mapping) else None
    ended = record.model_copy(
        update={
            "phase": "Superseded",
            "reason": "Remediation",
            "message": (
                f"step {record.step}: a crash-loop remediation ({action or 'a re-render'}) re-renders this generation "
                "for every replica: the rollout ends"
            ),
            "finished_at": rfc3339(view.now),
        }
    )
    prune = (canary_name(state.owner.name),) if view.canary is not None else ()
    return _written(state, list(state.manifests), prune, ended)


def _written(state: Desired, manifests: list[dict[str, Any]], prune: tuple[str, ...], record: RolloutStatus) -> Desired:
    state = with_manifests(state, tuple(manifests), prune)
    before = state.seen.get("rollout")
    status = {**state.status, "rollout": record.model_dump(by_alias=True, exclude_none=True)}
    status = _pin_known_good(state, status, record)
    changed = any((state.body.get("status") or {}).get(k) != v for k, v in status.items())
    events = (*state.events, *_events(before if isinstance(before, Mapping) else None, record))
    return dataclasses.replace(state, status=status, changed=changed, events=events)


def _pin_known_good(state: Desired, status: dict[str, Any], record: RolloutStatus | None) -> dict[str, Any]:
    """While a rollout is unfinished or halted, the new configuration has not served: lastKnownGood stays."""
    if record is None or record.phase in OVER:
        return status
    good = state.seen.get("lastKnownGood")
    pinned_status = {k: v for k, v in status.items() if k != "lastKnownGood"}
    if good:
        pinned_status["lastKnownGood"] = good
    return pinned_status


def pinned(state: Desired, record: RolloutStatus | None) -> Desired:
    """A look that applies nothing: only lastKnownGood is kept while the rollout is unfinished."""
    if record is None or record.phase in OVER:
        return state
    status = _pin_known_good(state, state.status, record)
    changed = any((state.body.get("status") or {}).get(k) != v for k, v in status.items())
    return dataclasses.replace(state, status=status, changed=changed)


def holds_known_good(status: Mapping[str, Any], generation: int) -> bool:
    """A rollout of this generation has not completed (unfinished or halted): lastKnownGood stays the previous
    configuration until it does, so no second look for it is due."""
    record = status.get("rollout")
    return isinstance(record, Mapping) and record.get("generation") == generation and record.get("phase") not in OVER


def needs_look(status: Mapping[str, Any], generation: int) -> bool:
    """A rollout of this generation still moves replicas: look again without an event (the stability window)."""
    record = status.get("rollout")
    if not isinstance(record, Mapping) or record.get("generation") != generation:
        return False
    if record.get("phase") in UNFINISHED:
        return True
    return record.get("phase") == "Halted" and int(record.get("newReplicas") or 0) > 0


def relevant(state: Desired) -> bool:
    """Whether a look must read the canary and the pods: the spec rolls progressively, or a rollout is recorded."""
    resource, effective = state.planned.resource, state.planned.result.effective
    if not state.apply or resource is None:
        return False
    if effective is not None and policy_of(resource.spec) == "Progressive":
        return True
    record = state.seen.get("rollout")
    return isinstance(record, Mapping) and record.get("phase") not in OVER
