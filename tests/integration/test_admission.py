"""The admission webhook through the real API server and the real kubectl (issue 7's acceptance).

The module starts `llama-operator run --webhook url` as a subprocess on a free loopback port (admission_run): the
operator watches only namespaces ``adm-<run>-*``, and its ValidatingWebhookConfiguration (named for the run) covers
only namespaces labelled with the run's id. The operator also runs the other handlers (reconcile); the tests do not
depend on what they do.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.integration.admission_run import (
    DENIED,
    LABEL,
    Operator,
    admission_run,
    webhook_configuration,
    webhook_operator,
)
from tests.integration.conftest import Sandbox, wait_for
from tests.integration.llamas import example

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def operator(sandbox: Sandbox) -> Iterator[Operator]:
    with admission_run(sandbox) as operator:
        yield operator


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
    document = example(name, None)
    result = operator.apply(document, namespace)
    assert result.returncode != 0, result.stdout
    assert DENIED in result.stderr
    assert f"- {field}: {code}: " in result.stderr
    assert fix in result.stderr
    assert not exists(operator, document["metadata"]["name"], namespace)


def test_the_scout_example_is_accepted(operator: Operator, namespace: str):
    result = operator.apply(example("llama4-scout.yaml", None), namespace)
    assert result.returncode == 0, result.stderr
    assert "llamadeployment.llamaops.dev/llama4-scout created" in result.stdout
    assert "Warning:" not in result.stderr
    assert exists(operator, "llama4-scout", namespace)


def test_tp5_on_llama4_is_refused_because_of_the_kv_heads(operator: Operator, namespace: str):
    document = example("llama4-scout.yaml", None)
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
    result = operator.apply(example("llama4-maverick-fp8-h200.yaml", None), namespace)
    assert result.returncode == 0, result.stderr
    assert "Warning: spec.engine.patched: out_of_vocab_token_ids: Token ids >= vocab_size" in result.stderr
    assert " Fix: " in result.stderr


def test_server_side_dry_run_is_checked_and_persists_nothing(operator: Operator, namespace: str):
    refused = operator.apply(example("invalid-llama4-vllm083.yaml", None), namespace, "--dry-run=server")
    assert refused.returncode != 0
    assert DENIED in refused.stderr
    assert "chunked_local_attention_block_table_overrun" in refused.stderr
    accepted = operator.apply(example("llama4-maverick-fp8-h200.yaml", None), namespace, "--dry-run=server")
    assert accepted.returncode == 0, accepted.stderr
    assert "(server dry run)" in accepted.stdout
    assert "Warning: spec.engine.patched: out_of_vocab_token_ids" in accepted.stderr
    assert not exists(operator, "llama4-maverick", namespace)


def test_a_spec_change_is_validated_and_a_metadata_change_is_not_blocked(operator: Operator, namespace: str):
    assert operator.apply(example("llama4-scout.yaml", None), namespace).returncode == 0
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
    assert operator.apply(example("invalid-llama4-vllm083.yaml", None), namespace).returncode == 0
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


def test_a_second_operator_reuses_the_ca_kept_in_the_secret(operator: Operator):
    """A restart or another replica with the same Secret serves under the same CA (caBundle unchanged)."""
    # It watches namespaces no test creates, and its configuration selects no namespace.
    run_id = operator.run_id
    second = Operator(
        operator.sandbox,
        f"{run_id}x",
        webhook_operator(
            operator.sandbox, run_id, f"{run_id}x", f"{LABEL}=nobody", f"adm-{run_id}-second.llamaops.dev"
        ),
    )
    try:
        second.process.start()
        config = wait_for("the second configuration", lambda: webhook_configuration(second), timeout=60)
        first = webhook_configuration(operator)
        assert first is not None
        assert config["webhooks"][0]["clientConfig"]["caBundle"] == first["webhooks"][0]["clientConfig"]["caBundle"]
    finally:
        second.process.stop()
    try:
        # It cleaned up after itself on SIGTERM.
        assert second.process.proc is not None
        assert second.process.proc.returncode == 0, second.operator_log()
        assert webhook_configuration(second) is None
    finally:
        second.process.delete_webhook_configuration()  # when it did not
