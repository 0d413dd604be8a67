"""The admission webhook through the real API server and the real kubectl (issue 7's acceptance).

The module starts `llama-operator run --webhook url` as a subprocess on a free loopback port. The sandbox is
shared, so everything here is scoped to this run: the operator watches only namespaces ``adm-<run>-*``, and its
ValidatingWebhookConfiguration (named for the run) covers only namespaces labelled with the run's id. The
operator also runs the other handlers (reconcile); the tests do not depend on what they do.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from llamaops_sandbox import processes
from tests.integration.conftest import Sandbox, wait_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
CRD = REPO / "crds" / "llamadeployments.llamaops.dev.yaml"
LABEL = "llamaops.dev/admission-test"
DENIED = 'admission webhook "validate.llamaops.dev" denied the request'


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def example(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text(encoding="utf-8"))
    document["metadata"].pop("namespace", None)  # applied into the test's own namespace
    return document


@dataclass
class Operator:
    """One `llama-operator run` process with its webhook on, and the run's cluster-scoped names."""

    sandbox: Sandbox
    run_id: str
    port: int
    config_name: str
    log: Path
    process: subprocess.Popen[bytes] | None = None
    namespaces: list[str] = field(default_factory=list)

    def kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.sandbox.try_kubectl(*args, stdin=stdin)

    def apply(self, document: dict[str, Any], namespace: str, *flags: str) -> subprocess.CompletedProcess[str]:
        return self.kubectl("apply", "-n", namespace, "-f", "-", *flags, stdin=yaml.safe_dump(document))

    def new_namespace(self, suffix: str, labelled: bool = True) -> str:
        name = f"adm-{self.run_id}-{suffix}"
        labels = {LABEL: self.run_id, "llamaops.dev/test": "integration"} if labelled else {}
        client.CoreV1Api(self.sandbox.api).create_namespace({"metadata": {"name": name, "labels": labels}})
        self.namespaces.append(name)
        return name

    def operator_log(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


def operator_command(run_id: str, port: int, config_name: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "llama_operator",
        "run",
        "--namespace",
        f"adm-{run_id}-*",
        "--liveness",
        "",
        "--metrics-address",
        "127.0.0.1",
        "--metrics-port",
        str(free_port()),
        "--webhook",
        "url",
        "--webhook-port",
        str(port),
        "--webhook-config-name",
        config_name,
        *extra,
    ]


def start_operator(operator: Operator, *extra: str) -> None:
    env = {**os.environ, "KUBECONFIG": str(operator.sandbox.layout.kubeconfig)}
    command = operator_command(operator.run_id, operator.port, operator.config_name, *extra)
    with operator.log.open("wb") as sink:
        operator.process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)


def stop_operator(operator: Operator) -> None:
    processes.end(operator.process)
    # The operator deletes its configuration on exit; make sure of it even if it crashed.
    try:
        client.AdmissionregistrationV1Api(operator.sandbox.api).delete_validating_webhook_configuration(
            operator.config_name
        )
    except ApiException as error:
        if error.status != 404:
            raise


def webhook_configuration(operator: Operator) -> dict[str, Any] | None:
    result = operator.kubectl("get", "validatingwebhookconfiguration", operator.config_name, "-o", "json")
    return json.loads(result.stdout) if result.returncode == 0 else None


@pytest.fixture(scope="module")
def operator(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    applied = sandbox.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    assert "serverside-applied" in applied
    sandbox.kubectl("wait", "--for=condition=Established", "crd/llamadeployments.llamaops.dev", "--timeout=60s")
    run_id = uuid.uuid4().hex[:6]
    log = tmp_path_factory.mktemp("admission") / "operator.log"
    operator = Operator(sandbox, run_id, free_port(), f"adm-{run_id}.llamaops.dev", log)
    try:
        operator.new_namespace("system", labelled=False)  # holds the certificate Secret
        start_operator(
            operator,
            "--webhook-namespace-label",
            f"{LABEL}={run_id}",
            "--webhook-cert-secret",
            f"adm-{run_id}-system/llama-operator-webhook-tls",
        )
        probe = operator.new_namespace("probe")

        def refuses() -> bool:
            assert operator.process is not None
            if operator.process.poll() is not None:
                pytest.fail(f"the operator exited ({operator.process.returncode}):\n{operator.operator_log()}")
            result = operator.apply(example("invalid-llama4-tp5.yaml"), probe, "--dry-run=server")
            return DENIED in result.stderr

        wait_for("the webhook to refuse a TP=5 probe", refuses, timeout=120)
        yield operator
    finally:
        # Deleted while the operator runs, so any finalizer of its reconcile handlers is taken off.
        for namespace in operator.namespaces:
            operator.kubectl("delete", "llamadeployments", "--all", "-n", namespace, "--timeout=60s")
        stop_operator(operator)
        core = client.CoreV1Api(sandbox.api)
        for namespace in operator.namespaces:
            core.delete_namespace(namespace)


@pytest.fixture
def namespace(operator: Operator) -> str:
    return operator.new_namespace(uuid.uuid4().hex[:6])


def exists(operator: Operator, name: str, namespace: str) -> bool:
    return operator.kubectl("get", "llamadeployment", name, "-n", namespace).returncode == 0


@pytest.mark.parametrize(
    ("name", "field", "code", "fix"),
    [
        (
            "invalid-llama4-vllm083.yaml",
            "spec.engine.maxModelLen",
            "chunked_local_attention_block_table_overrun",
            "Fix: use the patched image (spec.engine.patched: true)",
        ),
        (
            "invalid-llama4-tp5.yaml",
            "spec.engine.tensorParallelSize",
            "tp_incompatible_with_kv_heads",
            "Fix: use a tensor-parallel size from: 1, 2, 4, 8",
        ),
    ],
)
def test_an_invalid_example_is_refused_naming_field_code_and_fix(
    operator: Operator, namespace: str, name: str, field: str, code: str, fix: str
):
    document = example(name)
    result = operator.apply(document, namespace)
    assert result.returncode != 0, result.stdout
    assert DENIED in result.stderr
    assert f"- {field}: {code}: " in result.stderr
    assert fix in result.stderr
    assert not exists(operator, document["metadata"]["name"], namespace)


def test_the_scout_example_is_accepted(operator: Operator, namespace: str):
    result = operator.apply(example("llama4-scout.yaml"), namespace)
    assert result.returncode == 0, result.stderr
    assert "llamadeployment.llamaops.dev/llama4-scout created" in result.stdout
    assert "Warning:" not in result.stderr
    assert exists(operator, "llama4-scout", namespace)


def test_tp5_on_llama4_is_refused_because_of_the_kv_heads(operator: Operator, namespace: str):
    document = example("llama4-scout.yaml")
    document["spec"]["engine"]["tensorParallelSize"] = 5
    result = operator.apply(document, namespace)
    assert result.returncode != 0
    assert "spec.engine.tensorParallelSize: tp_incompatible_with_kv_heads: tensorParallelSize 5" in result.stderr
    assert "8 KV heads" in result.stderr


def test_vllm083_with_llama4_and_max_model_len_4096_is_refused_citing_16274_and_16209(
    operator: Operator, namespace: str
):
    document = {
        "apiVersion": "llamaops.dev/v1alpha1",
        "kind": "LlamaDeployment",
        "metadata": {"name": "scout-short-context"},
        "spec": {
            "model": {"name": "meta-llama/Llama-4-Scout-17B-16E-Instruct"},
            "engine": {"vllmVersion": "0.8.3", "patched": False, "tensorParallelSize": 8, "maxModelLen": 4096},
            "resources": {"gpuProduct": "NVIDIA-H100-80GB-HBM3"},
        },
    }
    result = operator.apply(document, namespace)
    assert result.returncode != 0
    refusal = result.stderr
    assert "spec.engine.maxModelLen: chunked_local_attention_block_table_overrun:" in refusal
    assert "vllm#16274" in refusal
    assert "fix: vllm#16209" in refusal
    assert "Fix: " in refusal
    assert "PR #16209" in refusal.split("Fix: ", 1)[1]
    # The same object with the fix applied (a multiple of the 8192-token chunk) goes through.
    document["spec"]["engine"]["maxModelLen"] = 8192
    assert operator.apply(document, namespace).returncode == 0


def test_a_warning_finding_prints_a_kubectl_warning(operator: Operator, namespace: str):
    result = operator.apply(example("llama4-maverick-fp8-h200.yaml"), namespace)
    assert result.returncode == 0, result.stderr
    assert "Warning: spec.engine.patched: out_of_vocab_token_ids: Token ids >= vocab_size" in result.stderr
    assert " Fix: " in result.stderr


def test_server_side_dry_run_is_checked_and_persists_nothing(operator: Operator, namespace: str):
    refused = operator.apply(example("invalid-llama4-vllm083.yaml"), namespace, "--dry-run=server")
    assert refused.returncode != 0
    assert DENIED in refused.stderr
    assert "chunked_local_attention_block_table_overrun" in refused.stderr
    accepted = operator.apply(example("llama4-maverick-fp8-h200.yaml"), namespace, "--dry-run=server")
    assert accepted.returncode == 0, accepted.stderr
    assert "(server dry run)" in accepted.stdout
    assert "Warning: spec.engine.patched: out_of_vocab_token_ids" in accepted.stderr
    assert not exists(operator, "llama4-maverick", namespace)


def test_a_spec_change_is_validated_and_a_metadata_change_is_not_blocked(operator: Operator, namespace: str):
    assert operator.apply(example("llama4-scout.yaml"), namespace).returncode == 0
    patch = json.dumps({"spec": {"engine": {"tensorParallelSize": 5}}})
    refused = operator.kubectl("patch", "llamadeployment", "llama4-scout", "-n", namespace, "--type=merge", "-p", patch)
    assert refused.returncode != 0
    assert "tp_incompatible_with_kv_heads" in refused.stderr
    labelled = operator.kubectl("label", "llamadeployment", "llama4-scout", "-n", namespace, "team=research")
    assert labelled.returncode == 0, labelled.stderr
    fixed = json.dumps({"spec": {"replicas": 2}})
    changed = operator.kubectl("patch", "llamadeployment", "llama4-scout", "-n", namespace, "--type=merge", "-p", fixed)
    assert changed.returncode == 0, changed.stderr


def test_an_object_stored_before_the_webhook_stays_manageable(operator: Operator):
    # The namespace is outside the webhook's selector while the invalid object is stored, then joins it.
    namespace = operator.new_namespace(uuid.uuid4().hex[:6], labelled=False)
    assert operator.apply(example("invalid-llama4-vllm083.yaml"), namespace).returncode == 0
    joined = operator.kubectl("label", "namespace", namespace, f"{LABEL}={operator.run_id}")
    assert joined.returncode == 0, joined.stderr

    def labelled() -> subprocess.CompletedProcess[str] | None:
        result = operator.kubectl(
            "label", "--overwrite", "llamadeployment", "llama4-scout-eval", "-n", namespace, "a=b"
        )
        return result if "Warning:" in result.stderr else None  # the API server's selector cache catches up

    result = wait_for("the webhook to cover the namespace", labelled, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "Warning: stored spec, not enforced: spec.engine.maxModelLen: chunked_local_attention" in result.stderr
    # Touching the broken spec is refused until it is fixed.
    longer = json.dumps({"spec": {"engine": {"maxModelLen": 6000}}})
    patch = ["patch", "llamadeployment", "llama4-scout-eval", "-n", namespace, "--type=merge", "-p"]
    assert operator.kubectl(*patch, longer).returncode != 0
    fixed = operator.kubectl(*patch, json.dumps({"spec": {"engine": {"maxModelLen": 8192}}}))
    assert fixed.returncode == 0, fixed.stderr
    assert operator.kubectl("delete", "llamadeployment", "llama4-scout-eval", "-n", namespace).returncode == 0


def test_the_configuration_is_scoped_fails_closed_and_trusts_the_served_certificate(operator: Operator):
    config = webhook_configuration(operator)
    assert config is not None
    [webhook] = config["webhooks"]
    assert webhook["failurePolicy"] == "Fail"
    assert webhook["sideEffects"] == "None"
    assert webhook["timeoutSeconds"] <= 5
    assert [rule["resources"] for rule in webhook["rules"]] == [["llamadeployments"]]
    assert webhook["rules"][0]["apiGroups"] == ["llamaops.dev"]
    assert webhook["namespaceSelector"] == {"matchLabels": {LABEL: operator.run_id}}
    assert webhook["clientConfig"]["url"] == f"https://127.0.0.1:{operator.port}/validate"
    ca = base64.b64decode(webhook["clientConfig"]["caBundle"]).decode()
    # A TLS client that trusts only the caBundle accepts the operator's serving certificate for 127.0.0.1.
    context = ssl.create_default_context(cadata=ca)
    with (
        socket.create_connection(("127.0.0.1", operator.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    # The CA is the one kept in the certificate Secret.
    secret = client.CoreV1Api(operator.sandbox.api).read_namespaced_secret(
        "llama-operator-webhook-tls", f"adm-{operator.run_id}-system"
    )
    assert secret.type == "kubernetes.io/tls"
    assert base64.b64decode(secret.data["ca.crt"]).decode() == ca


def test_a_second_operator_reuses_the_ca_kept_in_the_secret(operator: Operator, tmp_path: Path):
    """A restart or another replica with the same Secret serves under the same CA (caBundle unchanged)."""
    # It watches namespaces no test creates, and its configuration selects no namespace.
    second = Operator(
        operator.sandbox,
        f"{operator.run_id}x",
        free_port(),
        f"adm-{operator.run_id}-second.llamaops.dev",
        tmp_path / "second.log",
    )
    start_operator(
        second,
        "--webhook-namespace-label",
        f"{LABEL}=nobody",
        "--webhook-cert-secret",
        f"adm-{operator.run_id}-system/llama-operator-webhook-tls",
    )
    try:
        config = wait_for("the second configuration", lambda: webhook_configuration(second), timeout=60)
        first = webhook_configuration(operator)
        assert first is not None
        assert config["webhooks"][0]["clientConfig"]["caBundle"] == first["webhooks"][0]["clientConfig"]["caBundle"]
    finally:
        stop_operator(second)
    # It cleaned up after itself on SIGTERM.
    assert second.process is not None
    assert second.process.returncode == 0, second.operator_log()
    assert webhook_configuration(second) is None
