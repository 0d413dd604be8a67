"""`helm test`: from inside the cluster, the operator answers where the API server and Prometheus reach it.

templates/tests/operator-answers.yaml runs this file (`python -c`) in the operator's own image (Python, no curl)
with the chart's security context. It checks:

- the admission webhook, through its Service, over TLS: the certificate chains to the webhook's CA (the ca.crt of
  the webhook Secret, mounted) and names the Service (<service>.<namespace>.svc), the name the API server checks;
  and a dry-run AdmissionReview of a LlamaDeployment with an empty spec comes back refused, for this request;
- the operator's /metrics and kopf's /healthz, through the operator's metrics Service.

Addresses come from the variables the kubelet gives every container for each Service of its namespace
(``<NAME>_SERVICE_HOST``, ``<NAME>_SERVICE_PORT``, ``<NAME>_SERVICE_PORT_<PORT NAME>``): no cluster DNS needed.
Standard library only. Exit status 0 when every check passes, 1 otherwise, 2 when the pod is set up wrong.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import sys
import uuid
from collections.abc import Callable, Mapping
from typing import Any

# The admission request's resource (llama_operator.api; a unit test keeps them equal) and kopf's handler path.
GROUP, VERSION, KIND, PLURAL = "llamaops.dev", "v1alpha1", "LlamaDeployment", "llamadeployments"
REVIEW_PATH = "/validate"
TIMEOUT_S = 10.0
# Set by the test pod's template.
NAMESPACE = "LLAMAOPS_TEST_NAMESPACE"
WEBHOOK_SERVICE = "LLAMAOPS_TEST_WEBHOOK_SERVICE"
WEBHOOK_CA = "LLAMAOPS_TEST_WEBHOOK_CA"
OPERATOR_SERVICE = "LLAMAOPS_TEST_OPERATOR_SERVICE"


class SetupError(Exception):
    """The pod lacks what the checks need (a variable, a Service that did not exist when it started)."""


def service_address(environ: Mapping[str, str], service: str, port_name: str = "") -> tuple[str, int]:
    """The Service's cluster IP and port, as the kubelet put them in the environment."""
    prefix = service.upper().replace("-", "_") + "_SERVICE_"
    port_key = prefix + "PORT" + (f"_{port_name.upper().replace('-', '_')}" if port_name else "")
    host, port = environ.get(prefix + "HOST"), environ.get(port_key)
    if not host or not port:
        raise SetupError(
            f"no {prefix}HOST and {port_key} in the environment: the Service {service} did not exist when this pod "
            "started, or the pod has enableServiceLinks: false"
        )
    return host, int(port)


def review(uid: str, namespace: str) -> dict[str, Any]:
    """A dry-run CREATE of a LlamaDeployment with an empty spec: the webhook refuses it (missing fields)."""
    resource = {"group": GROUP, "version": VERSION, "resource": PLURAL}
    kind = {"group": GROUP, "version": VERSION, "kind": KIND}
    obj = {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": {"name": "helm-test", "namespace": namespace}}
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": kind,
            "resource": resource,
            "requestKind": kind,
            "requestResource": resource,
            "name": "helm-test",
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:helm-test"},
            "object": {**obj, "spec": {}},
            "dryRun": True,
        },
    }


def check_webhook(environ: Mapping[str, str]) -> str:
    service, namespace = environ[WEBHOOK_SERVICE], environ[NAMESPACE]
    host, port = service_address(environ, service)
    hostname = f"{service}.{namespace}.svc"
    context = ssl.create_default_context(cafile=environ[WEBHOOK_CA])
    # To the cluster IP, verifying the name the API server verifies.
    tls = context.wrap_socket(socket.create_connection((host, port), timeout=TIMEOUT_S), server_hostname=hostname)
    connection = http.client.HTTPConnection(host, port, timeout=TIMEOUT_S)
    connection.sock = tls
    try:
        uid = str(uuid.uuid4())
        body = json.dumps(review(uid, namespace))
        connection.request("POST", REVIEW_PATH, body=body, headers={"Content-Type": "application/json"})
        reply = connection.getresponse()
        text = reply.read().decode("utf-8", "replace")
    finally:
        connection.close()
    if reply.status != 200:
        raise AssertionError(f"HTTP {reply.status} from https://{hostname}{REVIEW_PATH}: {text[:300]}")
    answer = json.loads(text).get("response") or {}
    if answer.get("uid") != uid or answer.get("allowed") is not False:
        raise AssertionError(f"expected this request ({uid}) refused, got: {text[:300]}")
    message = str((answer.get("status") or {}).get("message") or "").splitlines()
    return f"https://{hostname}{REVIEW_PATH} ({host}:{port}) refused an empty spec: {message[0] if message else ''}"


def _get(environ: Mapping[str, str], port_name: str, path: str) -> str:
    host, port = service_address(environ, environ[OPERATOR_SERVICE], port_name)
    connection = http.client.HTTPConnection(host, port, timeout=TIMEOUT_S)
    try:
        connection.request("GET", path)
        reply = connection.getresponse()
        text = reply.read().decode("utf-8", "replace")
    finally:
        connection.close()
    if reply.status != 200:
        raise AssertionError(f"HTTP {reply.status} from {host}:{port}{path}: {text[:300]}")
    return text


def check_metrics(environ: Mapping[str, str]) -> str:
    text = _get(environ, "metrics", "/metrics")
    families = sorted({line.split()[2] for line in text.splitlines() if line.startswith("# TYPE llamaops_")})
    if not families:
        raise AssertionError("no llamaops_ metric families in /metrics")
    return f"/metrics serves {len(families)} llamaops_ metric families"


def check_health(environ: Mapping[str, str]) -> str:
    json.loads(_get(environ, "healthz", "/healthz"))  # kopf's probe results, a JSON object
    return "/healthz answers"


def checks(environ: Mapping[str, str]) -> list[tuple[str, Callable[[Mapping[str, str]], str]]]:
    out: list[tuple[str, Callable[[Mapping[str, str]], str]]] = []
    if environ.get(WEBHOOK_SERVICE):
        out.append(("admission webhook", check_webhook))
    out += [("metrics", check_metrics), ("health", check_health)]
    return out


def main(environ: Mapping[str, str]) -> int:
    failed = 0
    for name, check in checks(environ):
        try:
            print(f"ok   {name}: {check(environ)}", flush=True)
        except SetupError as error:
            print(f"SETUP {name}: {error}", flush=True)
            return 2
        except (OSError, ValueError, AssertionError, KeyError) as error:
            failed += 1
            print(f"FAIL {name}: {type(error).__name__}: {error}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(os.environ))
