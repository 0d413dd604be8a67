"""Autoscaling's inputs from the cluster (is KEDA there, the operator's Prometheus) for the pure step
desired.autoscaling, which every look that writes runs after the rollout's step."""

from __future__ import annotations

import logging

from llama_operator.desired import Desired
from llama_operator.desired.autoscaling import Cluster, autoscale
from llama_operator.handlers import kube
from llama_operator.health.prometheus import PrometheusConfig

log = logging.getLogger(__name__)


def prometheus_url() -> str | None:
    """The operator's own Prometheus (LLAMAOPS_PROMETHEUS_URL): the default server of the ScaledObjects."""
    try:
        config = PrometheusConfig.from_env()
    except ValueError as error:
        log.warning("LLAMAOPS_PROMETHEUS_*: %s", error)
        return None
    return config.url if config is not None else None


def autoscaled(state: Desired) -> Desired:
    """``state`` with autoscaling's step; asks the cluster about KEDA only for a spec with autoscaling, or one
    whose status still shows it (to delete its ScaledObject)."""
    resource = state.planned.resource
    wanted = resource is not None and resource.spec.autoscaling is not None
    if not wanted and state.seen.get("autoscaling") is None:
        return state
    return autoscale(state, Cluster(kube.serves_scaled_objects(), prometheus_url()))
