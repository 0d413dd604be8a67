"""The operator's Kubernetes I/O: server-side apply of children, reads, and status patches (the edge)."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from llama_operator.api import GROUP, PLURAL, VERSION

FIELD_MANAGER = "llama-operator"
APPLY = "application/apply-patch+yaml"  # a JSON document is valid YAML
MERGE = "application/merge-patch+json"
TIMEOUT_S = 30


def load_config() -> None:
    """In-cluster service account when running in a pod, else the current kubeconfig context."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]


@functools.cache
def api() -> client.ApiClient:
    return client.ApiClient()


def _json(response: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(response.data)
    return data


def _appliers() -> dict[str, Callable[..., Any]]:
    apps, core, policy, custom = (
        client.AppsV1Api(api()),
        client.CoreV1Api(api()),
        client.PolicyV1Api(api()),
        client.CustomObjectsApi(api()),
    )

    def service_monitor(name: str, namespace: str, body: dict[str, Any], **kwargs: Any) -> Any:
        return custom.patch_namespaced_custom_object(
            "monitoring.coreos.com", "v1", namespace, "servicemonitors", name, body, **kwargs
        )

    return {
        "Deployment": apps.patch_namespaced_deployment,
        "Service": core.patch_namespaced_service,
        "PodDisruptionBudget": policy.patch_namespaced_pod_disruption_budget,
        "ServiceMonitor": service_monitor,
    }


def apply(manifest: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply under our field manager (forcing: the operator owns its children's fields)."""
    meta = manifest["metadata"]
    patch = _appliers()[manifest["kind"]]
    response = patch(
        meta["name"],
        meta["namespace"],
        manifest,
        field_manager=FIELD_MANAGER,
        force=True,
        _content_type=APPLY,
        _preload_content=False,
        _request_timeout=TIMEOUT_S,
    )
    return _json(response)


def read_deployment(name: str, namespace: str) -> dict[str, Any] | None:
    try:
        response = client.AppsV1Api(api()).read_namespaced_deployment(
            name, namespace, _preload_content=False, _request_timeout=TIMEOUT_S
        )
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return _json(response)


def read_llama(name: str, namespace: str) -> dict[str, Any] | None:
    try:
        response = client.CustomObjectsApi(api()).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, _preload_content=False, _request_timeout=TIMEOUT_S
        )
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return _json(response)


def patch_llama_status(name: str, namespace: str, status: dict[str, Any]) -> None:
    client.CustomObjectsApi(api()).patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        name,
        {"status": status},
        field_manager=FIELD_MANAGER,
        _content_type=MERGE,
        _preload_content=False,
        _request_timeout=TIMEOUT_S,
    )


DISCOVERY_TTL_S = 60.0
_discovered: dict[str, tuple[float, bool]] = {}


def serves_service_monitors() -> bool:
    """Whether monitoring.coreos.com/v1 ServiceMonitors exist (Prometheus-Operator CRDs). Cached for a minute:
    installing the CRDs is rare, asking on every reconcile is not."""
    cached = _discovered.get("servicemonitors")
    if cached is not None and time.monotonic() - cached[0] < DISCOVERY_TTL_S:
        return cached[1]
    found = _discover_service_monitors()
    _discovered["servicemonitors"] = (time.monotonic(), found)
    return found


def _discover_service_monitors() -> bool:
    try:
        resources = client.CustomObjectsApi(api()).get_api_resources("monitoring.coreos.com", "v1")
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return any(r.name == "servicemonitors" for r in resources.resources)
