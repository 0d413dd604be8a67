"""`helm install` the chart into the sandbox and see the chart's operator reconcile the Scout example to Available.

KWOK fakes every pod: the operator pod the chart's Deployment makes turns Running and Ready but runs no code. So
that the test still proves the chart, the operator runs here as a local process with exactly what the chart gives
its pod:

- identity: a token of the chart's ServiceAccount (`kubectl create token`) in a kubeconfig holding nothing else, so
  every request it makes is allowed or refused by the chart's RBAC alone (namespaced mode: a Role in the watched
  namespace, the ClusterRole for kopf's CRD and Namespace watches and the webhook configuration, the Role for the
  webhook's certificate Secret);
- arguments: the args of the Deployment helm created, read back from the cluster, verbatim except for the listen
  addresses and ports (liveness, metrics, webhook), which move to free loopback ports.

It then reconciles the Scout example in the watched namespace to Available, keeps the webhook's certificate in
the chart's Secret and its ValidatingWebhookConfiguration pointing at the chart's Service (the API server cannot
reach a Service in the sandbox, so a checked namespace is refused with the call failing), and no request of the
operator is forbidden. The webhook port accepts a connection only once it answers an AdmissionReview over TLS (the
chart's readiness probe is a TCP connect to it). `helm uninstall` keeps the CRD (crds.keep) and removes the
ValidatingWebhookConfiguration, so the namespace it checked takes writes again.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.integration.chart_identity import chart_operator, refusals, token_kubeconfig
from tests.integration.conftest import Sandbox, make_namespace, not_found_is_none, wait_for
from tests.integration.llamas import GROUP, PLURAL, VERSION, example

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "llama-operator"
CRD = "llamadeployments.llamaops.dev"
READY_TIMEOUT_S = 60.0


@pytest.fixture
def release(sandbox: Sandbox, llama_crd: str) -> Iterator[dict[str, str]]:
    core = client.CoreV1Api(sandbox.api)
    operator_ns = make_namespace(sandbox, "chart-ops")
    serving_ns = make_namespace(sandbox, "chart-serving")
    name = f"llo-{uuid.uuid4().hex[:6]}"
    info = {
        "name": name,
        "namespace": operator_ns,
        "serving": serving_ns,
        "fullname": f"{name}-llama-operator",
        "webhook_label": f"chart-e2e-{uuid.uuid4().hex[:6]}",
    }
    info["webhook_config"] = f"{info['fullname']}.llamaops.dev"
    try:
        yield info
    finally:
        sandbox.helm("uninstall", name, "--namespace", operator_ns, "--ignore-not-found", "--wait", "--timeout", "2m")
        # The release owns its webhook configuration; a test that failed before its uninstall may leave it behind.
        admission = client.AdmissionregistrationV1Api(sandbox.api)
        not_found_is_none(admission.delete_validating_webhook_configuration, info["webhook_config"])
        for ns in (serving_ns, operator_ns, info.get("checked_ns")):
            if ns:
                core.delete_namespace(ns)


def test_helm_install_then_the_charts_identity_and_args_reconcile_scout(
    sandbox: Sandbox, release: dict[str, str], tmp_path: Path
) -> None:
    name, ns, serving, fullname = release["name"], release["namespace"], release["serving"], release["fullname"]
    values = {
        "watch": {"namespaces": [serving]},
        # Only namespaces with this label are checked: other tests' namespaces never meet this release's webhook.
        "webhook": {"namespaceLabels": {"llamaops.dev/chart-e2e": release["webhook_label"]}},
        "crds": {"enabled": True, "keep": True},
    }
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    # The CRD is usually there already (other tests apply crds/): the same document, so helm takes it over.
    sandbox.helm(
        "install", name, str(CHART), "--namespace", ns, "--values", str(tmp_path / "values.yaml"),
        "--take-ownership", "--force-conflicts", "--wait", "--timeout", "2m",
    )  # fmt: skip
    status = sandbox.helm("status", name, "--namespace", ns).stdout
    assert "STATUS: deployed" in status
    assert f"It reconciles LlamaDeployments in: {serving}." in status

    apps = client.AppsV1Api(sandbox.api)
    deployment = apps.read_namespaced_deployment(fullname, ns)
    assert deployment.status.available_replicas == 1  # a KWOK pod: scheduled and Ready, running no code
    pod = deployment.spec.template.spec
    assert pod.service_account_name == fullname
    (container,) = pod.containers
    chart_args: list[str] = container.args
    assert f"--namespace={serving}" in chart_args

    kubeconfig = token_kubeconfig(sandbox, ns, pod.service_account_name, tmp_path / "kubeconfig")
    operator = chart_operator(sandbox, chart_args, f"chart-{name}", kubeconfig)
    try:
        # Not waiting for health first: the webhook port is watched from the process's start.
        operator.start(wait=False)
        _the_webhook_port_opens_serving(operator.webhook_port, serving)
        operator.wait_ready()
        _scout_becomes_available(sandbox, serving)
        _webhook_is_wired_to_the_chart(sandbox, release)
        log = operator.log_text()
    finally:
        operator.stop()
    # Nothing the operator asked for was refused.
    refused = refusals(log)
    assert refused == [], "\n".join(refused)

    sandbox.helm("uninstall", name, "--namespace", ns, "--wait", "--timeout", "2m")
    crd = client.ApiextensionsV1Api(sandbox.api).read_custom_resource_definition(CRD)
    assert crd.metadata.annotations["helm.sh/resource-policy"] == "keep"
    assert crd.metadata.deletion_timestamp is None
    # The ValidatingWebhookConfiguration went with the release: the namespace it refused writes in takes them again.
    with pytest.raises(ApiException) as gone:
        client.AdmissionregistrationV1Api(sandbox.api).read_validating_webhook_configuration(release["webhook_config"])
    assert gone.value.status == 404
    body = example("llama4-scout.yaml", release["checked_ns"])
    client.CustomObjectsApi(sandbox.api).create_namespaced_custom_object(
        GROUP, VERSION, release["checked_ns"], PLURAL, body, dry_run="All"
    )


def _the_webhook_port_opens_serving(port: int, namespace: str) -> None:
    """From the operator's start, the first TCP connection its webhook port accepts is already answered over TLS:
    the chart's readiness probe (a TCP connect) never puts the pod in the webhook Service before it can answer."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, f"the webhook port {port} never opened"
            time.sleep(0.01)
    # The review `helm test` sends (the chart's own script), at once.
    script: dict[str, Any] = {}
    exec(compile((CHART / "checks" / "helm_test.py").read_text(), "helm_test.py", "exec"), script)
    context = ssl.create_default_context()
    # Whether the certificate chains to the chart's CA is test_security's and `helm test`'s; here: TLS is up.
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, context.wrap_socket(raw) as tls:
        body = json.dumps(script["review"]("readiness", namespace)).encode()
        tls.sendall(
            b"POST /validate HTTP/1.1\r\nHost: webhook\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert b'"uid": "readiness"' in answer or b'"uid":"readiness"' in answer, answer[-500:]


def _scout_becomes_available(sandbox: Sandbox, namespace: str) -> None:
    body = example("llama4-scout.yaml", namespace)
    custom = client.CustomObjectsApi(sandbox.api)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)

    def available() -> dict[str, Any] | None:
        status = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "llama4-scout").get("status")
        conditions = {c["type"]: c["status"] for c in (status or {}).get("conditions", [])}
        return status if status and status.get("phase") == "Running" and conditions.get("Available") == "True" else None

    status = wait_for("llama4-scout Available", available, timeout=120)
    assert status["readyReplicas"] == 1
    # Every child applied under the chart's Role.
    assert client.AppsV1Api(sandbox.api).read_namespaced_deployment("llama4-scout", namespace).spec.replicas == 1
    client.CoreV1Api(sandbox.api).read_namespaced_service("llama4-scout", namespace)
    client.PolicyV1Api(sandbox.api).read_namespaced_pod_disruption_budget("llama4-scout", namespace)
    reasons = {
        e.reason
        for e in client.CoreV1Api(sandbox.api).list_namespaced_event(namespace).items
        if e.involved_object.kind == "LlamaDeployment"
    }
    assert reasons, "no Events posted on the LlamaDeployment"


def _webhook_is_wired_to_the_chart(sandbox: Sandbox, release: dict[str, str]) -> None:
    ns, fullname = release["namespace"], release["fullname"]
    admission = client.AdmissionregistrationV1Api(sandbox.api)

    config = wait_for(
        "the ValidatingWebhookConfiguration",
        lambda: not_found_is_none(admission.read_validating_webhook_configuration, release["webhook_config"]),
        timeout=60,
    )
    (webhook,) = config.webhooks
    service = webhook.client_config.service
    assert (service.namespace, service.name, service.port) == (ns, f"{fullname}-webhook", 443)
    chart_service = client.CoreV1Api(sandbox.api).read_namespaced_service(f"{fullname}-webhook", ns)
    assert chart_service.spec.ports[0].port == service.port
    assert webhook.namespace_selector.match_labels == {"llamaops.dev/chart-e2e": release["webhook_label"]}
    # The self-managed certificate lives in the chart's Secret; the configuration trusts its CA.
    secret = client.CoreV1Api(sandbox.api).read_namespaced_secret(f"{fullname}-webhook-tls", ns)
    assert secret.type == "kubernetes.io/tls"
    ca = base64.b64decode(secret.data["ca.crt"])
    assert base64.b64decode(webhook.client_config.ca_bundle) == ca

    # A namespace the webhook checks: the API server calls the chart's Service, which no kube-proxy serves here,
    # and failurePolicy Fail refuses the write.
    checked = make_namespace(sandbox, "chart-checked")
    release["checked_ns"] = checked
    client.CoreV1Api(sandbox.api).patch_namespace(
        checked, {"metadata": {"labels": {"llamaops.dev/chart-e2e": release["webhook_label"]}}}
    )
    body = example("llama4-scout.yaml", checked)
    with pytest.raises(ApiException) as refused:
        client.CustomObjectsApi(sandbox.api).create_namespaced_custom_object(GROUP, VERSION, checked, PLURAL, body)
    assert "validate.llamaops.dev" in str(refused.value.body)
    assert f"{fullname}-webhook" in str(refused.value.body)
