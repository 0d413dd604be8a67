"""What a progressive rollout judges, for Deployments and LeaderWorkerSets alike (pure): the pods it reads, when a
pod of the new configuration has failed (the crash-loop detection, the readiness deadline) and how many steps a
rollout takes."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from llama_operator.api.rollout import RolloutStatus, seconds_of
from llama_operator.desired.state import Desired
from llama_operator.health.detect import detect_from_pods, parse_time, with_group_restarts
from llama_operator.health.policy import rfc3339
from llama_operator.health.regression import Verdict
from llama_operator.planning.rollout import startup_budget_s
from llama_operator.render.children import workload_config_hash
from llama_operator.render.labels import CONFIG_HASH_ANNOTATION
from llama_operator.render.lws import GroupRestarts

# The previous configuration's pod template, kept on the stable workload once it has taken the new one: a halt
# in a later step returns to it exactly (a Deployment's old ReplicaSet is scaled back up; a LeaderWorkerSet's
# updated groups roll back).
PREVIOUS_TEMPLATE_ANNOTATION = "llamaops.dev/previous-template"


@dataclasses.dataclass(frozen=True, slots=True)
class View:
    """What the edge read for a rollout, as it is: the stable workload (a Deployment or a LeaderWorkerSet), the
    canary Deployment and the deployment's pods."""

    stable: dict[str, Any] | None
    canary: dict[str, Any] | None
    pods: tuple[dict[str, Any], ...]
    now: datetime
    # The canary's metric analysis (handlers.analysis); None: nothing to judge on metrics.
    analysis: Verdict | None = None
    # A LeaderWorkerSet's Events (its RecreateGroup Events say which group crashed); empty for a Deployment.
    events: tuple[dict[str, Any], ...] = ()


def meta(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return (obj or {}).get("metadata") or {}


def workload_hash(workload: Mapping[str, Any] | None) -> str | None:
    return workload_config_hash([workload]) if workload is not None and workload.get("kind") else None


def pod_hash(pod: Mapping[str, Any]) -> str | None:
    return (meta(pod).get("annotations") or {}).get("llamaops.dev/config-hash")


def condition(pod: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return dict(condition)
    return {}


def ready_since(pod: Mapping[str, Any]) -> datetime | None:
    ready = condition(pod, "Ready")
    if ready.get("status") != "True" or meta(pod).get("deletionTimestamp"):
        return None
    return parse_time(ready.get("lastTransitionTime")) or datetime.min.replace(tzinfo=UTC)


def unschedulable(pods: Iterable[Mapping[str, Any]]) -> str | None:
    for pod in pods:
        scheduled = condition(pod, "PodScheduled")
        if scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
            return f"pod {meta(pod).get('name')}: {scheduled.get('message', '')}".strip()
    return None


def compact(template: Mapping[str, Any]) -> str:
    return json.dumps(template, sort_keys=True, separators=(",", ":"))


@dataclasses.dataclass(frozen=True, slots=True)
class Judge:
    """What the canary and each later step are judged by: the crash-loop detection and the readiness deadline."""

    budget_s: int
    window_s: int
    step: int
    total: int

    def failure(
        self, pods: list[dict[str, Any]], now: datetime, recreated: GroupRestarts | None = None
    ) -> tuple[str, str, datetime] | None:
        """(reason, message, when it failed) of the first failure among ``pods`` (the new configuration's).
        ``recreated``: the LeaderWorkerSet's recreations of its moved groups since the rollout started (a crash of
        a group shows there, not in its pods' restart counts)."""
        observed = detect_from_pods(pods)
        if recreated is not None:
            observed = with_group_restarts(observed, recreated.count, recreated.first, recreated.last)
        if observed.crash_looping:
            return "CrashLoop", f"new configuration {observed.why}", observed.first_crash or now
        for pod in pods:
            created = parse_time(meta(pod).get("creationTimestamp"))
            if created is not None and ready_since(pod) is None and (now - created).total_seconds() > self.budget_s:
                name = meta(pod).get("name")
                message = f"pod {name} of the new configuration not ready {self.budget_s} s after it was created"
                return "ReadinessTimeout", message, now
        return None

    @property
    def steps(self) -> int:
        """The canary, then the rest ``step`` at a time."""
        return 1 + -(-(self.total - self.step) // self.step)


def judge_of(state: Desired) -> Judge:
    resource = state.planned.resource
    assert resource is not None
    spec = resource.spec
    effective = state.planned.result.effective
    gpus = effective.gpus_per_replica if effective is not None else 1
    deadline = spec.rollout.progress_deadline
    budget = seconds_of(deadline) if deadline else startup_budget_s(state.planned.result.plan, gpus)
    total = spec.replicas
    step = max(1, min(spec.rollout.step, total - 1))
    return Judge(budget, seconds_of(spec.rollout.stability_window), step, total)


def alive(pod: Mapping[str, Any]) -> bool:
    return not meta(pod).get("deletionTimestamp")


def template_hash(template: Mapping[str, Any]) -> str | None:
    value = ((template.get("metadata") or {}).get("annotations") or {}).get(CONFIG_HASH_ANNOTATION)
    return str(value) if value is not None else None


def halted_record(
    record: RolloutStatus, now: datetime, total: int, left: int, reason: str, message: str, failed: datetime
) -> RolloutStatus:
    """The rollout record once halted, for Deployments and LeaderWorkerSets alike: the first halt's reason, message
    and times stay on later looks; ``left`` of ``total`` replicas still run the new configuration."""
    first = record.phase != "Halted"
    return record.model_copy(
        update={
            "phase": "Halted",
            "verdict": "Failed",
            "reason": reason if first else record.reason,
            "message": f"step {record.step}: {message}; returned to the previous configuration"
            if first
            else record.message,
            "old_replicas": total - left,
            "new_replicas": left,
            "finished_at": rfc3339(now) if first else record.finished_at,
            "failed_at": rfc3339(failed) if first else record.failed_at,
        }
    )
