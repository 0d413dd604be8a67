"""Every child of a LlamaDeployment, in the order they are applied."""

from __future__ import annotations

from typing import Any

from llama_operator.api import EffectiveConfig, LlamaDeploymentSpec, MemoryPlan
from llama_operator.render.deployment import deployment
from llama_operator.render.labels import Owner
from llama_operator.render.service import pod_disruption_budget, service, service_monitor


def children(
    owner: Owner,
    spec: LlamaDeploymentSpec,
    effective: EffectiveConfig,
    plan: MemoryPlan | None,
    *,
    service_monitors: bool,
) -> list[dict[str, Any]]:
    """The manifests to apply. ``service_monitors``: the cluster serves monitoring.coreos.com/v1 ServiceMonitors."""
    items = [service(owner), deployment(owner, spec, effective, plan), pod_disruption_budget(owner)]
    if service_monitors and spec.monitoring.enabled and spec.monitoring.service_monitor:
        items.append(service_monitor(owner, spec))
    return items
