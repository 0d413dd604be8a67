"""The real parts test_bad_input drives: a `llama-operator run --webhook url` process, a TLS client posting
AdmissionReviews straight to its webhook, and raw requests to the apiserver.

Generated objects may nest up to the apiserver's own limit (Go's JSON decoder stops at 10,000 levels), past what
Python's json module handles at its default recursion limit, so encoding and decoding here run under a raised one
(``deep_json``); the kubernetes client's own (de)serialisation is not used for them.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import ssl
import sys
from collections.abc import Iterator
from typing import Any

from kubernetes import client

from tests.integration.conftest import Sandbox, not_found_is_none, wait_for
from tests.integration.operator_process import OperatorProcess, Webhook

GROUP_PATH = "/apis/llamaops.dev/v1alpha1"
# The test process's own limit while it (de)serialises generated objects: above 10,000 levels of nesting.
DEEP_RECURSION_LIMIT = 25_000


@contextlib.contextmanager
def deep_json() -> Iterator[None]:
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(max(previous, DEEP_RECURSION_LIMIT))
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


def dumps(value: Any) -> bytes:
    with deep_json():
        return json.dumps(value).encode()


def loads(data: bytes) -> Any:
    with deep_json():
        return json.loads(data)


class FuzzOperator(OperatorProcess):
    """`llama-operator run` watching ``fuzz-<run>-*`` with its webhook on, covering namespaces labelled ``label``."""

    def __init__(self, sandbox: Sandbox, run_id: str, label: str) -> None:
        webhook = Webhook(f"fuzz-{run_id}.llamaops.dev", f"{label}={run_id}")
        super().__init__(sandbox, f"fuzz-{run_id}-*", f"fuzz-{run_id}", webhook=webhook)
        self.run_id, self.label = run_id, label
        self.tls: ssl.SSLContext | None = None

    def start(self, *, wait: bool = True) -> FuzzOperator:
        """Start it and wait until its configuration is there; its caBundle is what the TLS client trusts."""
        super().start(wait=wait)
        assert self.webhook is not None
        admission = client.AdmissionregistrationV1Api(self.sandbox.api)
        name = self.webhook.config_name

        def configured() -> str | None:
            self.check_alive()
            config = not_found_is_none(admission.read_validating_webhook_configuration, name)
            return None if config is None else str(config.webhooks[0].client_config.ca_bundle)

        ca = wait_for("the webhook's configuration", configured, timeout=120)
        self.tls = ssl.create_default_context(cadata=base64.b64decode(ca).decode())
        return self

    def connection(self) -> http.client.HTTPSConnection:
        """One kept-alive TLS connection to the webhook, as the apiserver holds one."""
        return http.client.HTTPSConnection("127.0.0.1", self.webhook_port, context=self.tls, timeout=30)


def post_review(connection: http.client.HTTPSConnection, body: bytes) -> tuple[int, bytes]:
    connection.request("POST", "/validate", body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, response.read()


class RawApi:
    """Requests to the apiserver with pre-encoded bodies, through the kubernetes client's authenticated pool."""

    def __init__(self, api: client.ApiClient) -> None:
        self.host = api.configuration.host
        self.pool = api.rest_client.pool_manager

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        response = self.pool.request(method, self.host + path, body=body, headers=headers, timeout=60)
        data = response.data
        try:
            return response.status, loads(data)
        except ValueError:
            return response.status, data.decode(errors="replace")

    def create(self, namespace: str, document: Any, *, dry_run: bool) -> tuple[int, Any]:
        query = "?dryRun=All" if dry_run else ""
        return self.request("POST", f"{GROUP_PATH}/namespaces/{namespace}/llamadeployments{query}", dumps(document))

    def create_child(self, manifest: dict[str, Any], namespace: str) -> tuple[int, Any]:
        """A server-side dry-run create of one rendered child (Deployment, Service, ...)."""
        group, _, version = manifest["apiVersion"].rpartition("/")
        base = f"/apis/{group}/{version}" if group else f"/api/{version}"
        plural = {"Deployment": "deployments", "Service": "services", "PodDisruptionBudget": "poddisruptionbudgets",
                  "LeaderWorkerSet": "leaderworkersets", "ServiceMonitor": "servicemonitors",
                  "PrometheusRule": "prometheusrules", "ConfigMap": "configmaps"}[manifest["kind"]]  # fmt: skip
        return self.request("POST", f"{base}/namespaces/{namespace}/{plural}?dryRun=All", dumps(manifest))

    def llamas(self, namespace: str) -> list[dict[str, Any]]:
        status, body = self.request("GET", f"{GROUP_PATH}/namespaces/{namespace}/llamadeployments")
        assert status == 200, body
        items: list[dict[str, Any]] = body["items"]
        return items
