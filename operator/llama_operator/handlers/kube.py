"""The operator's Kubernetes I/O: server-side apply of children, reads, and status patches (the edge)."""

from __future__ import annotations

import datetime
import functools
import json
import logging
import re
import time
from collections.abc import Mapping
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from llama_operator.api import GROUP, PLURAL, VERSION

FIELD_MANAGER = "llama-operator"
log = logging.getLogger(__name__)
APPLY = "application/apply-patch+yaml"  # a JSON document is valid YAML
MERGE = "application/merge-patch+json"
TIMEOUT_S = 30


def load_config() -> None:
    """In-cluster service account when running in a pod, else the current kubeconfig context."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]


# Threads that call the API at once: kopf's handler pool (handlers.startup) and the rechecks thread. The
# connection pool holds one kept-alive connection for each, or the surplus pays a TLS handshake per call.
WORKERS = 16


@functools.cache
def api() -> client.ApiClient:
    configuration = client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = WORKERS + 4
    return client.ApiClient(configuration)


def _json(response: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(response.data)
    return data


def _drain(response: Any) -> None:
    """Read an unwanted body to its end. With _preload_content=False an unread response closes its connection
    instead of returning it to the pool, and the next call pays a new TLS handshake (a fifth of the operator's
    CPU at scale before this, by py-spy: benchmarks/README.md)."""
    response.data  # noqa: B018 - reading releases the connection


# The plural of each kind the operator applies (its children).
PLURALS = {
    "Deployment": "deployments",
    "Service": "services",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "ServiceMonitor": "servicemonitors",
    "LeaderWorkerSet": "leaderworkersets",
    "ScaledObject": "scaledobjects",
}
LWS = ("leaderworkerset.x-k8s.io", "v1")
KEDA = ("keda.sh", "v1alpha1")


def object_path(manifest: Mapping[str, Any]) -> str:
    """The API path of a namespaced object (pure)."""
    api_version, meta = manifest["apiVersion"], manifest["metadata"]
    group = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{group}/namespaces/{meta['namespace']}/{PLURALS[manifest['kind']]}/{meta['name']}"


# A UTF-16 surrogate pair as json.dumps escapes it, not preceded by an escaped backslash.
_SURROGATE_PAIR = re.compile(r"(?<!\\)((?:\\\\)*)\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})")


def apply_body(manifest: Mapping[str, Any]) -> bytes:
    """The apply body, JSON written for the API server's YAML decoder (apply bodies are YAML). json.dumps escapes
    control and line-break characters, which YAML refuses raw, but writes characters beyond the BMP as surrogate
    pairs, which YAML refuses escaped (400, "invalid Unicode character escape code"): those become YAML's
    \\UXXXXXXXX. One emoji or one U+0085 in a pod annotation failed every reconcile of its LlamaDeployment."""

    def joined(pair: re.Match[str]) -> str:
        high, low = int(pair[2], 16), int(pair[3], 16)
        return f"{pair[1]}\\U{0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00):08x}"

    return _SURROGATE_PAIR.sub(joined, json.dumps(manifest, separators=(",", ":"))).encode()


def apply(manifest: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply under our field manager (forcing: the operator owns its children's fields)."""
    client_ = api()
    method, url, headers, _body, _post = client_.param_serialize(
        "PATCH",
        object_path(manifest),
        query_params=[("fieldManager", FIELD_MANAGER), ("force", "true")],
        header_params={"Content-Type": APPLY, "Accept": "application/json"},
        auth_settings=["BearerToken"],
    )
    response = client_.call_api(method, url, headers, apply_body(manifest), _request_timeout=TIMEOUT_S)
    data = response.read()  # type: ignore[no-untyped-call]
    if not 200 <= response.status < 300:
        error = ApiException(http_resp=response)
        if response.status == 404 and manifest["kind"] == "LeaderWorkerSet":
            # The resource itself is missing, not the object (apply creates it): say what to install.
            raise ApiException(
                status=404,
                reason="no LeaderWorkerSet API (leaderworkerset.x-k8s.io/v1) in the cluster; multi-node replicas "
                "need the LWS controller installed",
            ) from error
        raise error
    applied: dict[str, Any] = json.loads(data)
    return applied


def read_workload(kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    """A Deployment or LeaderWorkerSet by name; None when it (or, for LWS, its API) does not exist."""
    try:
        if kind == "LeaderWorkerSet":
            response = client.CustomObjectsApi(api()).get_namespaced_custom_object(
                *LWS, namespace, "leaderworkersets", name, _preload_content=False, _request_timeout=TIMEOUT_S
            )
        else:
            response = client.AppsV1Api(api()).read_namespaced_deployment(
                name, namespace, _preload_content=False, _request_timeout=TIMEOUT_S
            )
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return _json(response)


def delete_workload(kind: str, name: str, namespace: str, owner_uid: str) -> bool:
    """Delete a workload of ``kind`` that the LlamaDeployment ``owner_uid`` controls (left over from a spec that
    rendered the other kind). Returns whether one was deleted; anything not ours is left alone."""
    meta = (read_workload(kind, name, namespace) or {}).get("metadata") or {}
    if not any(ref.get("uid") == owner_uid and ref.get("controller") for ref in meta.get("ownerReferences") or []):
        return False
    # Preconditioned on the uid: a workload recreated meanwhile under the same name is not touched.
    body = client.V1DeleteOptions(
        propagation_policy="Background", preconditions=client.V1Preconditions(uid=meta.get("uid"))
    )
    try:
        if kind == "LeaderWorkerSet":
            client.CustomObjectsApi(api()).delete_namespaced_custom_object(
                *LWS, namespace, "leaderworkersets", name, body=body, _request_timeout=TIMEOUT_S
            )
        else:
            client.AppsV1Api(api()).delete_namespaced_deployment(name, namespace, body=body, _request_timeout=TIMEOUT_S)
    except ApiException as error:
        if error.status in (404, 409):
            return False
        raise
    return True


def read_serving_workload(name: str, namespace: str) -> dict[str, Any] | None:
    """Whichever workload serves a LlamaDeployment: its Deployment or, for multi-node replicas, its LeaderWorkerSet
    (reconcile keeps only one of them)."""
    return read_workload("Deployment", name, namespace) or read_workload("LeaderWorkerSet", name, namespace)


def read_deployment(name: str, namespace: str) -> dict[str, Any] | None:
    """The serving workload (see read_serving_workload): callers hand it to status, which reads either kind."""
    return read_serving_workload(name, namespace)


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
    response = client.CustomObjectsApi(api()).patch_namespaced_custom_object_status(
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
    _drain(response)


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
    return _serves("monitoring.coreos.com", "v1", "servicemonitors")


def _serves(group: str, version: str, plural: str) -> bool:
    try:
        resources = client.CustomObjectsApi(api()).get_api_resources(group, version)
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return any(r.name == plural for r in resources.resources)


# KEDA missing is looked for again sooner: installing it should not leave autoscaling off for a minute.
KEDA_MISSING_TTL_S = 15.0


def serves_scaled_objects() -> bool:
    """Whether keda.sh/v1alpha1 ScaledObjects exist (KEDA's CRDs), cached like serves_service_monitors."""
    cached = _discovered.get("scaledobjects")
    if cached is not None and time.monotonic() - cached[0] < (DISCOVERY_TTL_S if cached[1] else KEDA_MISSING_TTL_S):
        return cached[1]
    found = _serves(*KEDA, "scaledobjects")
    _discovered["scaledobjects"] = (time.monotonic(), found)
    return found


def delete_scaled_object(name: str, namespace: str, owner_uid: str) -> bool:
    """Delete the ScaledObject the LlamaDeployment ``owner_uid`` controls (spec.autoscaling was removed). Returns
    whether one was deleted; one that is not ours, or none, is left alone."""
    objects = client.CustomObjectsApi(api())
    try:
        found = _json(
            objects.get_namespaced_custom_object(
                *KEDA, namespace, "scaledobjects", name, _preload_content=False, _request_timeout=TIMEOUT_S
            )
        )
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    meta = found.get("metadata") or {}
    if not any(ref.get("uid") == owner_uid and ref.get("controller") for ref in meta.get("ownerReferences") or []):
        return False
    body = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=meta.get("uid")))
    try:
        objects.delete_namespaced_custom_object(
            *KEDA, namespace, "scaledobjects", name, body=body, _request_timeout=TIMEOUT_S
        )
    except ApiException as error:
        if error.status in (404, 409):
            return False
        raise
    return True


def list_pods(namespace: str, owner: str) -> list[dict[str, Any]]:
    """The pods of one LlamaDeployment (for the periodic crash-loop recheck, when the pod index is not there yet)."""
    response = client.CoreV1Api(api()).list_namespaced_pod(
        namespace,
        label_selector=f"llamaops.dev/deployment={owner}",
        _preload_content=False,
        _request_timeout=TIMEOUT_S,
    )
    items: list[dict[str, Any]] = _json(response).get("items", [])
    return items


# As much of a log as the kubelet puts in a termination message (FallbackToLogsOnError: 80 lines, 4096 bytes).
LOG_TAIL_LINES = 80
LOG_TAIL_BYTES = 4096


def container_log_tail(namespace: str, pod: str, container: str, *, previous: bool) -> str:
    """The last lines a container wrote (``previous``: its instance before the last restart); "" when the log is
    gone or may not be read."""
    try:
        text = client.CoreV1Api(api()).read_namespaced_pod_log(
            pod,
            namespace,
            container=container,
            previous=previous,
            tail_lines=LOG_TAIL_LINES,
            _request_timeout=TIMEOUT_S,
        )
    except ApiException as error:
        log.info(f"no log of {namespace}/{pod} {container} (previous={previous}): {error.status} {error.reason}")
        return ""
    return str(text).encode()[-LOG_TAIL_BYTES:].decode(errors="replace")


def post_event(involved: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    """A core/v1 Event on a LlamaDeployment. Posted directly rather than through kopf.event, which works only
    inside kopf's handler context: the periodic rechecks run outside it. A failure to post is logged, not raised."""
    meta = involved.get("metadata") or {}
    namespace = str(meta.get("namespace") or "default")
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {
        "metadata": {"generateName": f"{meta.get('name', 'llama')}.", "namespace": meta.get("namespace")},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion"),
            "kind": involved.get("kind"),
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
        },
        "type": type_,
        "reason": reason[:128],
        "message": message[:1024],
        "source": {"component": FIELD_MANAGER},
        "reportingComponent": FIELD_MANAGER,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    try:
        response = client.CoreV1Api(api()).create_namespaced_event(
            namespace,
            body,  # type: ignore[arg-type] # the client serialises a plain dict as it is
            _preload_content=False,
            _request_timeout=TIMEOUT_S,
        )
        _drain(response)
    except ApiException as error:
        log.warning(
            "could not post Event %s on %s/%s: %s", reason, meta.get("namespace"), meta.get("name"), error.status
        )


def list_events(namespace: str, kind: str, name: str) -> list[dict[str, Any]]:
    """core/v1 Events about one object (e.g. a LeaderWorkerSet's RecreateGroup Events)."""
    response = client.CoreV1Api(api()).list_namespaced_event(
        namespace,
        field_selector=f"involvedObject.kind={kind},involvedObject.name={name}",
        _preload_content=False,
        _request_timeout=TIMEOUT_S,
    )
    items: list[dict[str, Any]] = _json(response).get("items", [])
    return items
