"""Progressive rollout of multi-node replicas (pure): a LeaderWorkerSet moves its groups with its own partition.

LWS updates the groups whose index is at least ``rolloutStrategy.rollingUpdateConfiguration.partition`` to the
current template and leaves the others on theirs (its field exists for canaries). No second set and no surge: the
LeaderWorkerSet takes the new template with ``partition = replicas - step`` (the canary: the highest ``step``
groups, recreated ``maxUnavailable = step`` at a time, ``maxSurge = 0``), and each step whose groups have all
served the stability window lowers the partition by ``step`` until it is 0: Completed. Every pod of the new
configuration (leaders and workers) is judged as a Deployment's canary is (rollout_pods.Judge). A halt applies the
previous leaderWorkerTemplate (kept in an annotation) at the same partition: the moved groups roll back, the
others were never touched.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from llama_operator.api.rollout import RolloutStatus
from llama_operator.desired.rollout_pods import (
    PREVIOUS_TEMPLATE_ANNOTATION,
    Judge,
    View,
    alive,
    compact,
    halted_record,
    meta,
    pod_hash,
    ready_since,
    template_hash,
    unschedulable,
)
from llama_operator.health.detect import parse_time
from llama_operator.health.policy import rfc3339
from llama_operator.render.lws import GroupRestarts, group_restarts

# LWS labels every pod of a group with its index in the group; the leader's is 0. The leader turns Ready only once
# its workers have joined (render/lws.py), so a ready leader is a ready group.
WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"
# LWS's RecreateGroup Event ends "... to recreate group <index>" (its pod controller).
# Recreations of one group that make a crash loop rather than the rolling update's replacement of it.
CRASHES_OF_A_GROUP = 2
_RECREATED = re.compile(r"recreate group (\d+)\s*$")


@dataclasses.dataclass(frozen=True, slots=True)
class GroupStep:
    record: RolloutStatus
    restore: bool  # apply the previous leaderWorkerTemplate (halted); else the rendered (new) one
    partition: int | None  # None: as rendered (0, the rollout over)
    max_unavailable: int


def _leaders(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in pods if (meta(p).get("labels") or {}).get(WORKER_INDEX_LABEL) == "0"]


def _recreations(events: Iterable[Mapping[str, Any]], partition: int, since: datetime | None) -> GroupRestarts:
    """LWS's recreations since ``since`` of the groups at or above ``partition`` (those on the new configuration)
    that it recreated at least twice: its rolling update may recreate a group once as it replaces it (a worker of
    the previous configuration going first reads as failed), a crashing group is recreated on every crash."""
    by_group: dict[int, list[Mapping[str, Any]]] = {}
    for event in events:
        found = _RECREATED.search(str(event.get("message") or ""))
        last = group_restarts([event]).last
        if found and int(found[1]) >= partition and (since is None or (last is not None and last > since)):
            by_group.setdefault(int(found[1]), []).append(event)
    looping = [e for group in by_group.values() if group_restarts(group).count >= CRASHES_OF_A_GROUP for e in group]
    return group_restarts(looping)


def _partition(judge: Judge, number: int) -> int:
    """Groups below this index keep the previous configuration in step ``number`` (1: the canary)."""
    return max(0, judge.total - number * judge.step)


def previous_template(live: Mapping[str, Any], record: RolloutStatus) -> Mapping[str, Any] | None:
    """The previous leaderWorkerTemplate: the LeaderWorkerSet's own while it runs it, else the kept copy."""
    kept = (meta(live).get("annotations") or {}).get(PREVIOUS_TEMPLATE_ANNOTATION)
    candidates: list[Any] = []
    if kept:
        with contextlib.suppress(ValueError):
            candidates.append(json.loads(kept))
    candidates.append((live.get("spec") or {}).get("leaderWorkerTemplate"))
    for template in candidates:
        if isinstance(template, dict) and template_hash(template.get("leaderTemplate") or {}) == record.old_config_hash:
            return template
    return None


def step_groups(record: RolloutStatus, judge: Judge, view: View, new_hash: str) -> GroupStep:
    """The next look of a LeaderWorkerSet's rollout: its partition, template and status.rollout."""
    total = judge.total
    ours = [p for p in view.pods if pod_hash(p) == new_hash]
    number = max(1, record.step)
    partition = _partition(judge, number)
    if record.phase == "Halted":
        return _halt(record, view, partition, total, record.reason, record.message, view.now)
    failure = judge.failure(ours, view.now, _recreations(view.events, partition, parse_time(record.started_at)))
    if failure is not None:
        return _halt(record, view, partition, total, *failure)
    leaders = [p for p in _leaders(ours) if alive(p)]
    ready = [since for since in (ready_since(p) for p in leaders) if since is not None]
    counts = {"old_replicas": partition, "new_replicas": total - partition, "step": number, "steps": judge.steps}
    waiting = unschedulable(ours)
    moving = f"step {number} of {judge.steps}: {total - partition} of {total} groups on the new configuration"
    if waiting is not None:
        reason, message = "InsufficientGPUs", f"step {number} cannot proceed for lack of GPUs: {waiting}"
    elif len(leaders) >= total - partition and len(ready) >= total - partition:
        held = (view.now - max(ready)).total_seconds()
        if held >= judge.window_s:
            return _next(record, judge, number, view.now)
        reason, message = "Holding", f"{moving}, ready; held {int(held)} of {judge.window_s} s"
    else:
        reason = "Started" if number == 1 else "Promoted" if number == 2 else "Promoting"
        message = moving
    updated = record.model_copy(update={"reason": reason, "message": message, **counts})
    return GroupStep(updated, False, partition, judge.step)


def _next(record: RolloutStatus, judge: Judge, number: int, now: datetime) -> GroupStep:
    """The groups of step ``number`` have served the window: the next step, or Completed."""
    total = judge.total
    if number >= judge.steps:
        completed = record.model_copy(
            update={
                "phase": "Completed",
                "verdict": "Passed",
                "reason": "Completed",
                "step": judge.steps,
                "steps": judge.steps,
                "message": f"all {total} groups run the new configuration, in {judge.steps} steps",
                "old_replicas": 0,
                "new_replicas": total,
                "finished_at": rfc3339(now),
            }
        )
        return GroupStep(completed, False, None, judge.step)
    partition = _partition(judge, number + 1)
    moving = f"step {number + 1} of {judge.steps}: {total - partition} of {total} groups on the new configuration"
    served = f"step {number} served {judge.window_s} s without a crash"
    updated = record.model_copy(
        update={
            "phase": "Promoting",
            "verdict": "Passed",
            "reason": "Promoted" if number == 1 else "Promoting",
            "message": f"{served}; {moving}",
            "step": number + 1,
            "steps": judge.steps,
            "old_replicas": partition,
            "new_replicas": total - partition,
        }
    )
    return GroupStep(updated, False, partition, judge.step)


def _halt(
    record: RolloutStatus, view: View, partition: int, total: int, reason: str, message: str, failed: datetime
) -> GroupStep:
    """Back to the previous template at the same partition: the moved groups roll back as LWS recreates them."""
    left = len(_leaders([p for p in view.pods if pod_hash(p) == record.new_config_hash]))
    halted = halted_record(record, view.now, total, left, reason, message, failed)
    # The moved groups are replaced one at a time.
    return GroupStep(halted, True, partition, 1)


def group_manifest(
    rendered: Mapping[str, Any], moved: GroupStep, previous: Mapping[str, Any] | None, kept: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The LeaderWorkerSet to apply: the rendered one at the step's partition, on the previous template when
    halted (``kept``: the one it runs when the previous is unknown); the previous template kept in its annotation
    until the rollout completes."""
    manifest = copy.deepcopy(dict(rendered))
    spec = manifest["spec"]
    if moved.restore and kept is not None:
        spec["leaderWorkerTemplate"] = copy.deepcopy(dict(kept))
    if moved.partition is not None:
        spec["rolloutStrategy"] = {
            "type": "RollingUpdate",
            "rollingUpdateConfiguration": {
                "partition": moved.partition,
                "maxUnavailable": moved.max_unavailable,
                "maxSurge": 0,
            },
        }
        if previous is not None:
            manifest["metadata"]["annotations"][PREVIOUS_TEMPLATE_ANNOTATION] = compact(previous)
    return manifest
