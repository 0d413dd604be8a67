"""Every child of a LlamaDeployment, in the order they are applied."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from llama_operator.api import EffectiveConfig, LlamaDeploymentSpec, MemoryPlan
from llama_operator.render.deployment import deployment
from llama_operator.render.labels import CONFIG_HASH_ANNOTATION, Owner
from llama_operator.render.lws import leader_service, leader_worker_set
from llama_operator.render.service import pod_disruption_budget, service, service_monitor

# The kinds that run the pods; a LlamaDeployment has exactly one of them, chosen by nodes per replica.
WORKLOAD_KINDS = ("Deployment", "LeaderWorkerSet")


def workload_kind(effective: EffectiveConfig) -> str:
    """A Deployment while a replica fits on one node, a LeaderWorkerSet (one pod per node) beyond."""
    return "LeaderWorkerSet" if effective.nodes_per_replica > 1 else "Deployment"


def children(
    owner: Owner,
    spec: LlamaDeploymentSpec,
    effective: EffectiveConfig,
    plan: MemoryPlan | None,
    *,
    service_monitors: bool,
) -> list[dict[str, Any]]:
    """The manifests to apply. ``service_monitors``: the cluster serves monitoring.coreos.com/v1 ServiceMonitors."""
    if workload_kind(effective) == "LeaderWorkerSet":
        items = [leader_service(owner), leader_worker_set(owner, spec, effective, plan)]
    else:
        items = [service(owner), deployment(owner, spec, effective, plan)]
    items.append(pod_disruption_budget(owner))
    if service_monitors and spec.monitoring.enabled and spec.monitoring.service_monitor:
        items.append(service_monitor(owner, spec))
    return items


def workload_config_hash(manifests: Iterable[Mapping[str, Any]]) -> str | None:
    """The config hash the serving pods carry (llamaops.dev/config-hash), from whichever workload renders them: a
    LeaderWorkerSet's leader and workers carry the same one. None for a workload without one: a workload read from
    the cluster may be someone else's object of the same name."""
    for manifest in manifests:
        spec = manifest.get("spec") or {}
        if manifest["kind"] == "Deployment":
            template = spec.get("template") or {}
        elif manifest["kind"] == "LeaderWorkerSet":
            template = (spec.get("leaderWorkerTemplate") or {}).get("leaderTemplate") or {}
        else:
            continue
        value = ((template.get("metadata") or {}).get("annotations") or {}).get(CONFIG_HASH_ANNOTATION)
        return str(value) if value is not None else None
    return None
