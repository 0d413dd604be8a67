"""The chart on a real (small, air-gapped) cluster: readiness, `helm test`, uninstall, the image and its mirror.

- readiness: with the webhook on, the pod is Ready (in the webhook Service) once the webhook's TLS port listens;
- `helm test`: a pod of the operator's image and security context checks the webhook over TLS and /metrics and
  /healthz through Service variables (no DNS); its script runs here against local servers, as in the pod;
- uninstall: the ValidatingWebhookConfiguration is an ordinary object of the release (helm deletes it), exactly
  what the operator would write but the caBundle, which the operator only patches (--webhook-config=patch-ca);
- image: registry/repository:tag or @digest; imageRewrites become --image-rewrite flags the operator accepts.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import pytest

from llama_operator.api import GROUP, PLURAL, VERSION
from llama_operator.cli.run_images import rewrites_from_args
from llama_operator.cli.run_webhook import options_from_args
from llama_operator.render.images import ImageRewrite, ImageRewriteError
from llama_operator.webhook import certs, respond
from llama_operator.webhook.configuration import HANDLER_ID, service_client_config, validating_webhook_configuration
from tests.unit.chart_template import (
    CHART,
    FULLNAME,
    NAMESPACE,
    RELEASE,
    container,
    find,
    one,
    parsed_args,
    template,
    template_error,
)
from tests.unit.sandbox_tools import run

WEBHOOK_SERVICE = f"{FULLNAME}-webhook"
METRICS_SERVICE = f"{FULLNAME}-metrics"
SCRIPT = CHART / "checks" / "helm_test.py"


def ports_of(docs: list[dict[str, Any]]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container(docs)["ports"]}


def test_the_pod_is_ready_once_the_webhook_listens_and_live_while_kopf_answers() -> None:
    docs = template()
    operator = container(docs)
    ports = ports_of(docs)
    readiness = operator["readinessProbe"]
    assert readiness["tcpSocket"] == {"port": "webhook"}
    assert ports["webhook"] == options_from_args(parsed_args(docs)).port  # type: ignore[union-attr]
    assert readiness["periodSeconds"] == 5
    assert readiness["failureThreshold"] == 3
    # Liveness stays kopf's health endpoint.
    assert operator["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    # The webhook Service sends calls only to Ready pods of the operator.
    service = one(docs, "Service", WEBHOOK_SERVICE)
    assert service["spec"]["ports"][0]["targetPort"] == "webhook"
    # Without the webhook, ready is kopf's health endpoint answering.
    off = container(template("webhook.enabled=false", "readiness.periodSeconds=7"))
    assert off["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert off["readinessProbe"]["periodSeconds"] == 7


# --- helm test -----------------------------------------------------------------------------------------------------


def helm_test_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (pod,) = [d for d in find(docs, "Pod") if d["metadata"]["annotations"]["helm.sh/hook"] == "test"]
    return pod


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_the_helm_test_pod_runs_the_operators_image_hardened_and_without_dns() -> None:
    docs = template("image.registry=127.0.0.1:5000", "imagePullSecrets[0].name=local")
    pod = helm_test_pod(docs)
    spec = pod["spec"]
    (check,) = spec["containers"]
    deployment = one(docs, "Deployment")["spec"]["template"]["spec"]
    # The operator's own image (Python is in it; curl is not) and security context.
    assert check["image"] == container(docs)["image"] == "127.0.0.1:5000/llama-operator:0.1.0"
    assert spec["imagePullSecrets"] == [{"name": "local"}]
    assert spec["securityContext"] == deployment["securityContext"]
    assert check["securityContext"] == container(docs)["securityContext"]
    assert check["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert check["command"] == ["python3", "-c"]
    assert check["args"] == [SCRIPT.read_text()]
    assert spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False  # it never calls the API server
    assert spec["enableServiceLinks"] is True  # the <SERVICE>_SERVICE_HOST/_PORT variables it reads
    assert pod["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == "before-hook-creation"
    env = {e["name"]: e["value"] for e in check["env"]}
    assert env == {
        "LLAMAOPS_TEST_NAMESPACE": NAMESPACE,
        "LLAMAOPS_TEST_OPERATOR_SERVICE": METRICS_SERVICE,
        "LLAMAOPS_TEST_WEBHOOK_SERVICE": WEBHOOK_SERVICE,
        "LLAMAOPS_TEST_WEBHOOK_CA": "/etc/llama-operator/webhook-ca/ca.crt",
    }
    # Both Services are part of the release (so they exist before the test pod starts and the kubelet gives it
    # their variables), and their named ports lead to the operator's.
    ports = ports_of(docs)
    metrics = one(docs, "Service", METRICS_SERVICE)
    assert {p["name"]: p["targetPort"] for p in metrics["spec"]["ports"]} == {
        "metrics": "metrics",
        "healthz": "healthz",
    }
    assert {p["name"]: p["port"] for p in metrics["spec"]["ports"]} == {
        "metrics": ports["metrics"],
        "healthz": ports["healthz"],
    }
    assert "helm.sh/hook" not in (metrics["metadata"].get("annotations") or {})
    # Only the CA certificate of the webhook's Secret is mounted, never its key.
    (volume,) = spec["volumes"]
    assert volume["secret"] == {
        "secretName": f"{FULLNAME}-webhook-tls",
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }
    (mount,) = check["volumeMounts"]
    assert Path(env["LLAMAOPS_TEST_WEBHOOK_CA"]).parent == Path(mount["mountPath"])
    # No Service of the operator (nor its PodMonitor) picks the test pod.
    for service in find(docs, "Service"):
        assert not selects(service["spec"]["selector"], pod["metadata"]["labels"])
    assert check["resources"]["limits"]["memory"]


def test_the_helm_test_pod_follows_the_webhook_and_can_be_left_out() -> None:
    cert_manager = helm_test_pod(template("webhook.certificates.mode=cert-manager"))
    (volume,) = cert_manager["spec"]["volumes"]
    assert (
        volume["secret"]["secretName"]
        == one(template("webhook.certificates.mode=cert-manager"), "Certificate")["spec"]["secretName"]
    )
    off = helm_test_pod(template("webhook.enabled=false"))
    (check,) = off["spec"]["containers"]
    assert {e["name"] for e in check["env"]} == {"LLAMAOPS_TEST_NAMESPACE", "LLAMAOPS_TEST_OPERATOR_SERVICE"}
    assert "volumes" not in off["spec"]
    assert not find(template("helmTest.enabled=false"), "Pod")


def service_env(service: str, host: str, port: int | None = None, **named: int) -> dict[str, str]:
    """What the kubelet puts in a container's environment for a Service of its namespace."""
    key = service.upper().replace("-", "_")
    env = {f"{key}_SERVICE_HOST": host}
    if port is not None:
        env[f"{key}_SERVICE_PORT"] = str(port)
    for name, number in named.items():
        env.setdefault(f"{key}_SERVICE_PORT", str(number))
        env[f"{key}_SERVICE_PORT_{name.upper()}"] = str(number)
    return env


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: ClassVar[dict[Any, Any]] = {}

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        answer = self.routes.get(("GET", self.path))
        self._send(200, answer.encode()) if answer is not None else self._send(404, b"not found")

    def do_POST(self) -> None:
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        answer = self.routes["POST"](review) if self.path == f"/{HANDLER_ID}" else None
        self._send(200, json.dumps(answer).encode()) if answer is not None else self._send(404, b"not found")


@contextmanager
def serve(routes: dict[Any, Any], tls: ssl.SSLContext | None = None) -> Iterator[int]:
    handler = type("Handler", (_Handler,), {"routes": routes})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def webhook_tls(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """The webhook's serving certificate for its Service names, as the operator makes it; the CA file the pod
    mounts."""
    bundle = certs.generate(certs.service_hostnames(WEBHOOK_SERVICE, NAMESPACE), dt.datetime.now(dt.UTC))
    (tmp_path / "tls.crt").write_bytes(bundle.cert)
    (tmp_path / "tls.key").write_bytes(bundle.key)
    (tmp_path / "ca.crt").write_bytes(bundle.ca_cert)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    return context, tmp_path / "ca.crt"


METRICS = "# HELP llamaops_reconcile_total x\n# TYPE llamaops_reconcile_total counter\nllamaops_reconcile_total 0.0\n"


def run_check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The rendered pod's command, here: `python3 -c <script>` with the pod's variables."""
    (check,) = helm_test_pod(template())["spec"]["containers"]
    pod_env = {e["name"]: e["value"] for e in check["env"]}
    return subprocess.run(
        [sys.executable, *check["command"][1:], *check["args"]],
        env={**pod_env, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_helm_test_script_passes_against_a_webhook_and_operator_that_answer(
    webhook_tls: tuple[ssl.SSLContext, Path],
) -> None:
    context, ca = webhook_tls
    operator_routes = {("GET", "/metrics"): METRICS, ("GET", "/healthz"): "{}"}
    with serve({"POST": respond}, context) as webhook_port, serve(operator_routes) as operator_port:
        env = {
            "LLAMAOPS_TEST_WEBHOOK_CA": str(ca),
            **service_env(WEBHOOK_SERVICE, "127.0.0.1", webhook_port),
            **service_env(METRICS_SERVICE, "127.0.0.1", metrics=operator_port, healthz=operator_port),
        }
        done = run_check(env)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"ok   admission webhook: https://{WEBHOOK_SERVICE}.{NAMESPACE}.svc/validate")
    assert "refused an empty spec" in lines[0]
    assert lines[1:] == ["ok   metrics: /metrics serves 1 llamaops_ metric families", "ok   health: /healthz answers"]


def test_the_helm_test_script_fails_on_a_wrong_answer_a_foreign_certificate_and_a_missing_service(
    webhook_tls: tuple[ssl.SSLContext, Path], tmp_path: Path
) -> None:
    context, ca = webhook_tls

    def allows(review: dict[str, Any]) -> dict[str, Any]:
        return {"response": {"uid": review["request"]["uid"], "allowed": True}}

    # Another CA than the webhook's Secret holds: the TLS check fails, as the API server's would.
    other = certs.generate(("other",), dt.datetime.now(dt.UTC))
    (tmp_path / "other-ca.crt").write_bytes(other.ca_cert)
    with serve({"POST": allows}, context) as webhook_port, serve({("GET", "/healthz"): "{}"}) as operator_port:
        operator = service_env(METRICS_SERVICE, "127.0.0.1", metrics=operator_port, healthz=operator_port)
        webhook = service_env(WEBHOOK_SERVICE, "127.0.0.1", webhook_port)
        wrong = run_check({"LLAMAOPS_TEST_WEBHOOK_CA": str(ca), **webhook, **operator})
        foreign = run_check({"LLAMAOPS_TEST_WEBHOOK_CA": str(tmp_path / "other-ca.crt"), **webhook, **operator})
        missing = run_check({"LLAMAOPS_TEST_WEBHOOK_CA": str(ca), **operator})
    assert wrong.returncode == 1
    assert "FAIL admission webhook: AssertionError: expected this request" in wrong.stdout
    assert "FAIL metrics: AssertionError: HTTP 404" in wrong.stdout
    assert "ok   health" in wrong.stdout
    assert foreign.returncode == 1
    assert "FAIL admission webhook: SSLCertVerificationError" in foreign.stdout
    assert missing.returncode == 2
    assert f"{WEBHOOK_SERVICE.upper().replace('-', '_')}_SERVICE_HOST" in missing.stdout


def test_the_review_the_script_sends_is_for_llamadeployments() -> None:
    namespace: dict[str, Any] = {}
    exec(compile(SCRIPT.read_text(), str(SCRIPT), "exec"), namespace)  # the chart's own file
    assert (namespace["GROUP"], namespace["VERSION"], namespace["PLURAL"]) == (GROUP, VERSION, PLURAL)
    assert namespace["REVIEW_PATH"] == f"/{HANDLER_ID}"
    answer = respond(namespace["review"]("u-1", NAMESPACE))
    assert answer["response"]["uid"] == "u-1"
    assert answer["response"]["allowed"] is False


# --- uninstall -----------------------------------------------------------------------------------------------------


def test_the_webhook_configuration_is_the_releases_and_what_the_operator_would_write() -> None:
    docs = template("webhook.namespaceLabels.llamaops\\.dev/admission=on")
    config = one(docs, "ValidatingWebhookConfiguration", f"{FULLNAME}.llamaops.dev")
    # An ordinary object of the release, so `helm uninstall` deletes it: no hook, no keep policy.
    annotations = config["metadata"].get("annotations") or {}
    assert "helm.sh/hook" not in annotations
    assert "helm.sh/resource-policy" not in annotations
    options = options_from_args(parsed_args(docs))
    assert options is not None
    assert options.config_name == config["metadata"]["name"]
    # The operator only patches the caBundle into it, and never creates it.
    assert (options.config_mode, options.applies_config) == ("patch-ca", False)
    assert options.service is not None
    expected = validating_webhook_configuration(
        service_client_config(options.service.name, options.service.namespace, options.service_port, b""),
        options.config_name,
        options.namespace_labels,
        options.timeout_seconds,
    )
    for webhook in expected["webhooks"]:
        del webhook["clientConfig"]["caBundle"]
    assert config["webhooks"] == expected["webhooks"]
    assert config["webhooks"][0]["namespaceSelector"] == {"matchLabels": {"llamaops.dev/admission": "on"}}
    # None at all without the webhook (tests/unit/test_chart_values.py: the namespaces it covers otherwise).
    assert not find(template("webhook.enabled=false"), "ValidatingWebhookConfiguration")
    named = template("webhook.configName=llm-admission.example.com")
    assert one(named, "ValidatingWebhookConfiguration")["metadata"]["name"] == "llm-admission.example.com"


def test_notes_no_longer_ask_to_delete_the_configuration_by_hand() -> None:
    rendered = run(
        "helm", "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client",
        "--set", "imageRewrites[0].from=ghcr.io/llamaops/vllm",
        "--set", "imageRewrites[0].to=127.0.0.1:5000/llamaops/vllm-cpu",
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    notes = rendered.stdout.split("NOTES:", 1)[1]
    assert "kubectl delete validatingwebhookconfiguration" not in notes
    assert "uninstall` removes it" in notes
    assert f"helm test {RELEASE}" in notes
    assert "ghcr.io/llamaops/vllm -> 127.0.0.1:5000/llamaops/vllm-cpu" in notes


# --- the image and the mirror --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sets", "image"),
    [
        ((), "ghcr.io/llamaops/llama-operator:0.1.0"),
        (("image.tag=0.1.1",), "ghcr.io/llamaops/llama-operator:0.1.1"),
        (("image.registry=127.0.0.1:5000",), "127.0.0.1:5000/llama-operator:0.1.0"),
        (("image.registry=", "image.repository=localhost/llama-operator"), "localhost/llama-operator:0.1.0"),
        (("image.registry=registry.example.com/team",), "registry.example.com/team/llama-operator:0.1.0"),
        (
            ("image.registry=127.0.0.1:5000", "image.repository=llamaops/operator", f"image.digest=sha256:{'a' * 64}"),
            f"127.0.0.1:5000/llamaops/operator@sha256:{'a' * 64}",
        ),
        (
            (f"image.digest=sha256:{'b' * 64}", "image.tag=ignored"),
            f"ghcr.io/llamaops/llama-operator@sha256:{'b' * 64}",
        ),
    ],
)
def test_the_image_is_registry_repository_and_tag_or_digest(sets: tuple[str, ...], image: str) -> None:
    docs = template(*sets)
    assert container(docs)["image"] == image
    (check,) = helm_test_pod(docs)["spec"]["containers"]
    assert check["image"] == image


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("image.digest=latest",), "image/digest"),
        (("image.registry=https://127.0.0.1:5000",), "image/registry"),
        (("imageRewrites[0].from=ghcr.io/llamaops/vllm",), "to"),
        (("imageRewrites[0].from=ghcr.io/llamaops/vllm", "imageRewrites[0].to="), "imageRewrites/0/to"),
        (("imageRewrites[0].from=a b", "imageRewrites[0].to=c"), "imageRewrites/0/from"),
        (("imageRewrites[0].from=ghcr.io/llamaops/vllm:0.8.3", "imageRewrites[0].to=c.io/v"), "imageRewrites/0/from"),
        (("imageRewrites[0].from=ghcr.io/llamaops/vllm", "imageRewrites[0].to=c.io/v@sha256:0"), "imageRewrites/0/to"),
        (("readiness.periodSeconds=0",), "readiness/periodSeconds"),
    ],
)
def test_bad_image_values_are_refused(sets: tuple[str, ...], message: str) -> None:
    assert message in template_error(*sets)


def test_image_rewrites_reach_the_operator_as_flags_it_accepts() -> None:
    docs = template(
        "imageRewrites[0].from=ghcr.io/llamaops/vllm",
        "imageRewrites[0].to=127.0.0.1:5000/llamaops/vllm-cpu",
        "imageRewrites[1].from=docker.io/vllm/vllm-openai",
        "imageRewrites[1].to=127.0.0.1:5000/vllm/vllm-openai-cpu",
    )
    assert "--image-rewrite=ghcr.io/llamaops/vllm=127.0.0.1:5000/llamaops/vllm-cpu" in container(docs)["args"]
    assert rewrites_from_args(parsed_args(docs), {}) == (
        ImageRewrite("ghcr.io/llamaops/vllm", "127.0.0.1:5000/llamaops/vllm-cpu"),
        ImageRewrite("docker.io/vllm/vllm-openai", "127.0.0.1:5000/vllm/vllm-openai-cpu"),
    )
    assert rewrites_from_args(parsed_args(template()), {}) == ()
    # What the schema lets through but the operator refuses stops it at startup, with the rule: a rule set that
    # rewrites its own output, a tag after a short name.
    chained = template("imageRewrites[0].from=docker.io", "imageRewrites[0].to=docker.io/mirror")
    with pytest.raises(ImageRewriteError, match="rewritten again"):
        rewrites_from_args(parsed_args(chained), {})
    tagged = template("imageRewrites[0].from=vllm:latest", "imageRewrites[0].to=127.0.0.1:5000/vllm")
    with pytest.raises(ImageRewriteError, match="carries a tag"):
        rewrites_from_args(parsed_args(tagged), {})
