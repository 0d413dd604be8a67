"""The KEDA ScaledObject of a LlamaDeployment with spec.autoscaling (pure).

Its scaleTargetRef is the LlamaDeployment itself: the HPA KEDA makes from it writes spec.replicas through the
LlamaDeployment's scale subresource (api/crd.py), so the operator stays the one writer of the workload and of
status.replicas. Field names are KEDA v2.21's (apis/keda/v1alpha1/scaledobject_types.go, and the Prometheus
scaler's metadata in pkg/scalers/prometheus_scaler.go).
"""

from __future__ import annotations

from typing import Any

from llama_operator.api import API_VERSION, KIND
from llama_operator.api.autoscaling import AutoscalingSpec
from llama_operator.api.rollout import seconds_of
from llama_operator.planning.autoscaling import Limits, target_of
from llama_operator.render.labels import SPEC_GENERATION_ANNOTATION, Owner, metadata

KEDA_API_VERSION = "keda.sh/v1alpha1"
SCALED_OBJECT = "ScaledObject"
# KEDA's PausedAnnotation: "true" stops the HPA and leaves the replicas where they are.
PAUSED_ANNOTATION = "autoscaling.keda.sh/paused"
# Why the operator paused it (a crash loop, a rollout), for whoever reads the ScaledObject.
PAUSED_REASON_ANNOTATION = "llamaops.dev/autoscaling-paused-reason"


def scaled_object(
    owner: Owner,
    spec: AutoscalingSpec,
    limits: Limits,
    *,
    query: str,
    metric_type: str,
    server: str,
    paused: str | None,
) -> dict[str, Any]:
    """The ScaledObject (named as the deployment). ``paused``: why autoscaling holds still (None: it scales)."""
    meta = metadata(owner)
    if paused is not None:
        annotations = {SPEC_GENERATION_ANNOTATION: str(owner.generation), PAUSED_ANNOTATION: "true"}
        meta = {**meta, "annotations": {**annotations, PAUSED_REASON_ANNOTATION: paused}}
    trigger = {
        "type": "prometheus",
        "metricType": metric_type,
        "metadata": {"serverAddress": server, "query": query, "threshold": f"{target_of(spec):g}"},
    }
    behavior = {
        "scaleUp": {"stabilizationWindowSeconds": seconds_of(spec.scale_up_stabilization)},
        "scaleDown": {"stabilizationWindowSeconds": seconds_of(spec.scale_down_cooldown)},
    }
    return {
        "apiVersion": KEDA_API_VERSION,
        "kind": SCALED_OBJECT,
        "metadata": meta,
        "spec": {
            "scaleTargetRef": {"apiVersion": API_VERSION, "kind": KIND, "name": owner.name},
            "pollingInterval": seconds_of(spec.polling_interval),
            # Only the step to zero waits for it; the HPA's scale-down window paces the rest.
            "cooldownPeriod": seconds_of(spec.scale_down_cooldown),
            "minReplicaCount": limits.min_replicas,
            "maxReplicaCount": limits.max_replicas,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": behavior}},
            "triggers": [trigger],
        },
    }
