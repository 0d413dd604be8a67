"""Autoscaling's step of a look (pure): after the rollout's step, the ScaledObject to apply (capped at the GPUs,
paused while the deployment crash-loops or rolls out), status.autoscaling and the Autoscaling condition.

It runs last because it reads what the look decided: the CrashLooping condition (crash-loop remediation's) and
status.rollout (the progressive rollout's), so the pause starts with the look that starts the crash loop or the
rollout. A look that applies no children (a status refresh, a crash-loop check) still applies the ScaledObject when
what it renders moved (paused, its limits, its query): that is what makes a pause, or a cap that follows the GPU
nodes, take effect at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from llama_operator.api.autoscaling import AutoscalingSpec
from llama_operator.desired.rollout import UNFINISHED
from llama_operator.desired.state import Desired
from llama_operator.health import Event
from llama_operator.health.signals import signal
from llama_operator.planning.autoscaling import Limits, limits, target_of
from llama_operator.render import status as status_rules
from llama_operator.render.autoscaling import scaled_object

CONDITION = status_rules.AUTOSCALING
KEDA_MISSING = (
    "the cluster serves no keda.sh/v1alpha1 ScaledObjects (KEDA is not installed): nothing scales this deployment, "
    "its replicas stay at spec.replicas. Install KEDA (v2.21 or later; its Helm chart kedacore/keda), or remove "
    "spec.autoscaling"
)
NO_PROMETHEUS = (
    "no Prometheus to read vLLM's signals from: set spec.autoscaling.prometheusAddress, or give the operator its "
    "Prometheus (LLAMAOPS_PROMETHEUS_URL, the chart's prometheus.url)"
)
# What status.autoscaling records of the rendered ScaledObject: when one of them moves, the ScaledObject is applied.
RENDERED_KEYS = ("active", "paused", "minReplicas", "maxReplicas", "query")
# Reasons whose Event is a Warning: autoscaling cannot do what the spec asks. A rollout's pause is routine.
WARNINGS = frozenset({"KedaNotInstalled", "NoPrometheus", "CrashLooping", "LimitedByGPUs"})


@dataclasses.dataclass(frozen=True, slots=True)
class Cluster:
    """``keda``: the cluster serves keda.sh/v1alpha1 ScaledObjects; ``prometheus``: the operator's own Prometheus
    URL (the default server of the ScaledObject's trigger)."""

    keda: bool
    prometheus: str | None


def pause_of(status: Mapping[str, Any]) -> tuple[str, str] | None:
    """Why autoscaling must hold still, as (reason, message): a crash loop (scaling up would start more crashing
    replicas, and a remediation re-renders them), or a progressive rollout (its steps count the replicas)."""
    for condition in status.get("conditions") or []:
        if condition.get("type") == status_rules.CRASH_LOOPING and condition.get("status") == "True":
            return "CrashLooping", f"paused while the deployment crash-loops: {condition.get('message', '')}"
    rollout = status.get("rollout") or {}
    if rollout.get("phase") in UNFINISHED:
        return (
            "RolloutInProgress",
            f"paused while generation {rollout.get('generation')} rolls out (phase {rollout.get('phase')})",
        )
    return None


def _verdict(
    scaling: AutoscalingSpec, bounds: Limits, cluster: Cluster, server: str | None, pause: tuple[str, str] | None
) -> tuple[bool, str, str]:
    if not cluster.keda:
        return False, "KedaNotInstalled", KEDA_MISSING
    if server is None:
        return False, "NoPrometheus", NO_PROMETHEUS
    if pause is not None:
        return False, pause[0], f"{pause[1]}; {bounds.message}"
    scales = f"KEDA scales on {scaling.metric} (target {target_of(scaling):g} per replica)"
    if bounds.capped:
        return True, "LimitedByGPUs", f"{bounds.message}; {scales}"
    return True, "Active", f"{scales} {bounds.message}"


def _transition_events(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[Event, ...]:
    """An Event when the condition's status or reason moves (LimitedByGPUs and Active are both True)."""

    def of(status: Mapping[str, Any]) -> Mapping[str, Any]:
        return next((c for c in status.get("conditions") or [] if c.get("type") == CONDITION), {})

    old, new = of(before), of(after)
    if not new or (old.get("status"), old.get("reason")) == (new["status"], new["reason"]):
        return ()
    message = f"{CONDITION}={new['status']}: {new['message']}"
    return (Event("Warning" if new["reason"] in WARNINGS else "Normal", new["reason"], message),)


def _with(state: Desired, status: dict[str, Any], manifest: dict[str, Any] | None, prune: bool) -> Desired:
    before = dict(state.body.get("status") or {})
    return dataclasses.replace(
        state,
        manifests=(*state.manifests, manifest) if manifest is not None else state.manifests,
        status=status,
        changed=any(before.get(key) != value for key, value in status.items()),
        events=(*state.events, *_transition_events(state.seen, status)),
        prune_scaled_object=prune,
    )


def autoscale(state: Desired, cluster: Cluster) -> Desired:
    """``state`` with autoscaling's ScaledObject, status block and condition (or with them removed)."""
    resource, result = state.planned.resource, state.planned.result
    if resource is None or not result.valid:
        return state  # an earlier valid generation keeps serving, and its ScaledObject with it
    scaling = resource.spec.autoscaling
    recorded = state.seen.get("autoscaling")
    if scaling is None:
        if recorded is None:
            return state
        # Turned off: the ScaledObject goes (or KEDA keeps scaling), and so does the status block.
        return _with(state, {**state.status, "autoscaling": None}, None, prune=cluster.keda)
    owner = state.owner
    bounds = limits(scaling, result.capacity.fit if result.capacity is not None else None)
    server = scaling.prometheus_address or cluster.prometheus
    # The status as it will be once the merge patch is written: a look that leaves status.rollout keeps it.
    pause = pause_of({**state.seen, **state.status})
    ok, reason, message = _verdict(scaling, bounds, cluster, server, pause)
    found = signal(scaling, owner.namespace, owner.name, resource.spec.engine.vllm_version)
    block = {
        "active": ok,
        "paused": pause is not None,
        "minReplicas": bounds.min_replicas,
        "maxReplicas": bounds.max_replicas,
        "requestedMaxReplicas": bounds.requested_max,
        "gpuLimit": bounds.gpu_limit,
        "metric": scaling.metric,
        "query": found.query,
        "message": message,
    }
    # A merge patch: null removes a key the recorded block has; a null for a key it lacks would read as a change.
    block = {key: value for key, value in block.items() if value is not None or key in (recorded or {})}
    status = status_rules.with_condition(
        {**state.status, "autoscaling": block},
        state.seen,
        (CONDITION, ok, reason, message),
        owner.generation,
        state.now,
    )
    manifest = None
    if cluster.keda and server is not None:
        moved = any((recorded or {}).get(key) != block[key] for key in RENDERED_KEYS)
        if state.manifests or moved:
            manifest = scaled_object(
                owner,
                scaling,
                bounds,
                query=found.query,
                metric_type=found.metric_type,
                server=server,
                paused=pause[0] if pause is not None else None,
            )
    return _with(state, status, manifest, prune=False)
