"""The Service for the OpenAI-compatible port, the PodDisruptionBudget and the Prometheus-Operator ServiceMonitor."""

from __future__ import annotations

from typing import Any

from llama_operator.api import LlamaDeploymentSpec
from llama_operator.render.labels import OPENAI_PORT, PORT_NAME, Owner, metadata, selector_labels


def service(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(owner.name),
            "ports": [{"name": PORT_NAME, "port": OPENAI_PORT, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
    }


def endpoint(owner: Owner) -> str:
    """The in-cluster base URL of the OpenAI API."""
    return f"http://{owner.name}.{owner.namespace}.svc:{OPENAI_PORT}/v1"


def pod_disruption_budget(owner: Owner) -> dict[str, Any]:
    # At most one replica down for voluntary disruptions (drains, upgrades): a model reload takes minutes.
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(owner),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(owner.name)}},
    }


def service_monitor(owner: Owner, spec: LlamaDeploymentSpec) -> dict[str, Any]:
    """Prometheus-Operator scraping of vLLM's /metrics through the Service."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": metadata(owner),
        "spec": {
            "selector": {"matchLabels": selector_labels(owner.name)},
            "namespaceSelector": {"matchNames": [owner.namespace]},
            "endpoints": [{"port": PORT_NAME, "path": "/metrics", "interval": spec.monitoring.interval}],
        },
    }
