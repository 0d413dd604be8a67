"""The ValidatingWebhookConfiguration for LlamaDeployments (pure builders: dicts in, dicts out).

One webhook, for CREATE and UPDATE of ``llamadeployments.llamaops.dev`` only, failurePolicy Fail (an operator
that cannot be asked must not let a crashing configuration through), sideEffects None (so dry-run requests are
checked too) and a short timeout: validation takes well under a millisecond, and a slow webhook would stall
every `kubectl apply` of a LlamaDeployment.
"""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Mapping
from typing import Any

from llama_operator.api import GROUP, PLURAL, VERSION

# The kopf handler id; kopf serves each handler at <server path>/<handler id>.
HANDLER_ID = "validate"
DEFAULT_NAME = f"llama-operator.{GROUP}"
WEBHOOK_NAME = f"validate.{GROUP}"
TIMEOUT_SECONDS = 5
MAX_TIMEOUT_SECONDS = 5
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "llama-operator"


def ca_bundle(ca_pem: bytes) -> str:
    """The caBundle field: the PEM CA certificate(s), base64-encoded."""
    return base64.b64encode(ca_pem).decode("ascii")


def url_client_config(host: str, port: int, ca_pem: bytes, path: str = HANDLER_ID) -> dict[str, Any]:
    """clientConfig for an operator outside the cluster (the sandbox): ``https://<host>:<port>/<path>``."""
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    url = urllib.parse.urlunsplit(("https", netloc, "/" + path.lstrip("/"), "", ""))
    return {"url": url, "caBundle": ca_bundle(ca_pem)}


def service_client_config(
    service: str, namespace: str, port: int, ca_pem: bytes, path: str = HANDLER_ID
) -> dict[str, Any]:
    """clientConfig for an operator in the cluster, reached through its Service."""
    return {
        "service": {"name": service, "namespace": namespace, "port": port, "path": "/" + path.lstrip("/")},
        "caBundle": ca_bundle(ca_pem),
    }


def ca_bundle_patch(ca_pem: bytes) -> list[dict[str, Any]]:
    """A JSON patch that sets the caBundle of a configuration someone else installed (the Helm chart, which then
    owns every other field): it fails (422) unless that configuration's first webhook is ours, and (404) where
    there is no configuration, so it never creates one."""
    return [
        {"op": "test", "path": "/webhooks/0/name", "value": WEBHOOK_NAME},
        {"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": ca_bundle(ca_pem)},
    ]


def validating_webhook_configuration(
    client_config: Mapping[str, Any],
    name: str = DEFAULT_NAME,
    namespace_labels: Mapping[str, str] | None = None,
    timeout_seconds: int = TIMEOUT_SECONDS,
) -> dict[str, Any]:
    """The whole ValidatingWebhookConfiguration object.

    ``namespace_labels`` limits the webhook to namespaces carrying those labels (an operator that watches only
    some namespaces, or a test run sharing a cluster); by default it covers every namespace.
    """
    if not 1 <= timeout_seconds <= MAX_TIMEOUT_SECONDS:
        raise ValueError(f"timeoutSeconds must be 1..{MAX_TIMEOUT_SECONDS}, got {timeout_seconds}")
    webhook: dict[str, Any] = {
        "name": WEBHOOK_NAME,
        "admissionReviewVersions": ["v1"],
        "clientConfig": dict(client_config),
        "rules": [
            {
                "apiGroups": [GROUP],
                "apiVersions": [VERSION],
                "resources": [PLURAL],
                "operations": ["CREATE", "UPDATE"],
                "scope": "Namespaced",
            }
        ],
        "failurePolicy": "Fail",
        # Equivalent: a future llamaops.dev/v1beta1 of the same objects is checked too, converted to this version.
        "matchPolicy": "Equivalent",
        "sideEffects": "None",
        "timeoutSeconds": timeout_seconds,
    }
    if namespace_labels:
        webhook["namespaceSelector"] = {"matchLabels": dict(namespace_labels)}
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name, "labels": {MANAGED_BY_LABEL: MANAGED_BY}},
        "webhooks": [webhook],
    }
