"""What the canary's metric analysis asks Prometheus, if anything (pure): the canary and stable pods that serve,
and the window to compare them over. handlers.analysis queries and judges (health.regression); the verdict joins
the rollout's in desired/rollout.py (View.analysis)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from llama_operator.api.rollout import seconds_of
from llama_operator.desired.rollout import CANARY, TRACK_LABEL
from llama_operator.desired.state import Desired
from llama_operator.health.detect import parse_time
from llama_operator.health.regression import Thresholds


@dataclasses.dataclass(frozen=True, slots=True)
class Ask:
    namespace: str
    canary: tuple[str, ...]
    stable: tuple[str, ...]
    window_s: int
    thresholds: Thresholds


def _ready_since(pod: Mapping[str, Any]) -> datetime | None:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return None
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready" and condition.get("status") == "True":
            return parse_time(condition.get("lastTransitionTime"))
    return None


def enabled(state: Desired, prometheus: bool) -> bool:
    """spec.rollout.analysis.enabled, defaulting to whether the operator has Prometheus; never without it."""
    resource = state.planned.resource
    if resource is None or not prometheus:
        return False
    chosen = resource.spec.rollout.analysis.enabled
    return True if chosen is None else chosen


def ask(state: Desired, pods: Iterable[Mapping[str, Any]], now: datetime, prometheus: bool) -> Ask | None:
    """The question for this look: only while this generation's canary holds, with at least one canary pod ready.
    The window runs from the first canary pod's readiness, at most the stability window."""
    record = state.seen.get("rollout")
    resource = state.planned.resource
    if (
        resource is None
        or not enabled(state, prometheus)
        or not isinstance(record, Mapping)
        or record.get("generation") != state.owner.generation
        or record.get("phase") != "Canary"
    ):
        return None
    canary: list[str] = []
    stable: list[str] = []
    since: list[datetime] = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        ready = _ready_since(pod)
        if ready is None:
            continue
        if (meta.get("labels") or {}).get(TRACK_LABEL) == CANARY:
            canary.append(str(meta.get("name")))
            since.append(ready)
        else:
            stable.append(str(meta.get("name")))
    if not canary or not stable:
        return None
    window = seconds_of(resource.spec.rollout.stability_window)
    served = int((now - min(since)).total_seconds())
    analysis = resource.spec.rollout.analysis
    return Ask(
        state.owner.namespace,
        tuple(sorted(canary)),
        tuple(sorted(stable)),
        max(1, min(window, served)),
        Thresholds.of(analysis),
    )
