"""The admission webhook's I/O: TLS files on disk, the certificate Secret, the ValidatingWebhookConfiguration.

Blocking calls (the ``kubernetes`` client, files); ``handlers.admission`` runs them in a thread. What to write is
decided by the pure builders in ``llama_operator.webhook``.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from llama_operator.handlers.startup import FIELD_MANAGER
from llama_operator.webhook import certs
from llama_operator.webhook.configuration import (
    ca_bundle_patch,
    service_client_config,
    url_client_config,
    validating_webhook_configuration,
)
from llama_operator.webhook.options import NamespacedName, WebhookOptions

log = logging.getLogger(__name__)
APPLY_PATCH = "application/apply-patch+yaml"
JSON_PATCH = "application/json-patch+json"
CA_KEY = "ca.key"


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Where the server reads its certificate, key and CA; ``scratch`` is our own directory, removed at exit."""

    cert: Path
    key: Path
    ca: Path
    scratch: Path | None = None


def api_client() -> client.ApiClient:
    """The in-cluster service account in a pod, the kubeconfig (KUBECONFIG or ~/.kube/config) elsewhere."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        return client.ApiClient(configuration)
    api: client.ApiClient = config.new_client_from_config()  # type: ignore[no-untyped-call]
    return api


def provided_files(directory: Path) -> TlsFiles:
    """A mounted kubernetes.io/tls Secret (e.g. cert-manager's); checked now so a bad mount fails at startup."""
    data = {name: (directory / name).read_bytes() for name in os.listdir(directory) if (directory / name).is_file()}
    certs.bundle_from_data(data)
    ca = directory / certs.CA_CERT
    return TlsFiles(directory / certs.TLS_CERT, directory / certs.TLS_KEY, ca if ca.exists() else directory / "tls.crt")


def write_files(bundle: certs.CertBundle, directory: Path | None = None) -> TlsFiles:
    """Write a bundle for the server to load: the key readable by this user only. Rewrites in place."""
    scratch = directory or Path(tempfile.mkdtemp(prefix="llama-operator-webhook-"))
    files = TlsFiles(scratch / certs.TLS_CERT, scratch / certs.TLS_KEY, scratch / certs.CA_CERT, scratch)
    for path, content in ((files.key, bundle.key), (files.cert, bundle.cert), (files.ca, bundle.ca_cert)):
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(content)
        tmp.chmod(0o600)
        tmp.replace(path)
    return files


def remove_files(files: TlsFiles | None) -> None:
    if files is not None and files.scratch is not None:
        shutil.rmtree(files.scratch, ignore_errors=True)


def _decoded(data: Mapping[str, str | bytes] | None) -> dict[str, bytes]:
    # The client hands Secret data over still base64-encoded, as the API server sends it.
    return {key: base64.b64decode(value) for key, value in (data or {}).items()}


def _secret_body(ref: NamespacedName, bundle: certs.CertBundle, resource_version: str | None) -> client.V1Secret:
    metadata: dict[str, Any] = {
        "name": ref.name,
        "namespace": ref.namespace,
        "labels": {"app.kubernetes.io/managed-by": FIELD_MANAGER},
    }
    if resource_version:
        metadata["resourceVersion"] = resource_version
    data = {key: base64.b64encode(value).decode("ascii") for key, value in bundle.secret_data().items()}
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "type": "kubernetes.io/tls", "data": data}
    secret = client.V1Secret.from_dict(body)
    assert secret is not None
    return secret


def secret_bundle(api: client.ApiClient, ref: NamespacedName, hostnames: tuple[str, ...]) -> certs.CertBundle:
    """The bundle kept in Secret ``ref``: read it, renew it if needed, create it if absent.

    Replicas race safely: the loser of a create or replace gets a conflict and takes what the winner stored.
    """
    core = client.CoreV1Api(api)
    for _attempt in range(3):
        secret: client.V1Secret | None
        try:
            secret = core.read_namespaced_secret(ref.name, ref.namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            secret = None
        existing = certs.bundle_from_data(_decoded(secret.data)) if secret is not None else None
        bundle, reason = certs.ensure(existing, hostnames, dt.datetime.now(dt.UTC))
        if reason is None:
            return bundle
        try:
            if secret is None:
                core.create_namespaced_secret(ref.namespace, _secret_body(ref, bundle, None))
            else:
                version = secret.metadata.resource_version if secret.metadata else None
                core.replace_namespaced_secret(ref.name, ref.namespace, _secret_body(ref, bundle, version))
        except ApiException as error:
            if error.status in (409, 422):
                continue  # another replica wrote it first: read theirs
            raise
        log.info("webhook certificate stored in Secret %s: %s", ref, reason)
        return bundle
    raise RuntimeError(f"could not store the webhook certificate in Secret {ref}: it kept changing")


def client_config(options: WebhookOptions, ca_pem: bytes) -> dict[str, Any]:
    if options.service is not None:
        service = options.service
        return service_client_config(service.name, service.namespace, options.service_port, ca_pem)
    return url_client_config(options.url_host, options.port, ca_pem)


def apply_configuration(api: client.ApiClient, options: WebhookOptions, ca_pem: bytes) -> None:
    """Server-side apply the ValidatingWebhookConfiguration with the current caBundle."""
    body = validating_webhook_configuration(
        client_config(options, ca_pem), options.config_name, options.namespace_labels, options.timeout_seconds
    )
    client.AdmissionregistrationV1Api(api).patch_validating_webhook_configuration(
        options.config_name, body, field_manager=FIELD_MANAGER, force=True, _content_type=APPLY_PATCH
    )


def patch_ca_bundle(api: client.ApiClient, options: WebhookOptions, ca_pem: bytes) -> bool:
    """Set the caBundle of the configuration installed with the operator (``--webhook-config=patch-ca``); False
    when there is none (it is never created here: after `helm uninstall` it must stay gone)."""
    try:
        client.AdmissionregistrationV1Api(api).patch_validating_webhook_configuration(
            options.config_name, ca_bundle_patch(ca_pem), field_manager=FIELD_MANAGER, _content_type=JSON_PATCH
        )
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def delete_configuration(api: client.ApiClient, name: str) -> bool:
    """Delete the configuration; False when it was already gone."""
    try:
        client.AdmissionregistrationV1Api(api).delete_validating_webhook_configuration(name)
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True
