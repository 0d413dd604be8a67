"""An admission run for the webhook's integration tests (test_admission, test_gpu_node_labels): one
`llama-operator run --webhook url` on a free loopback port, scoped to the run. The sandbox is shared, so the operator
watches only namespaces ``adm-<run>-*`` and its ValidatingWebhookConfiguration (named for the run) covers only
namespaces labelled with the run's id."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.integration.conftest import Sandbox, wait_for
from tests.integration.llamas import example
from tests.integration.operator_process import OperatorProcess, Webhook

CRD = Path(__file__).resolve().parents[2] / "crds" / "llamadeployments.llamaops.dev.yaml"
LABEL = "llamaops.dev/admission-test"
DENIED = 'admission webhook "validate.llamaops.dev" denied the request'


@dataclass
class Operator:
    """One `llama-operator run` process with its webhook on, and the namespaces of the run (``adm-<run>-*``)."""

    sandbox: Sandbox
    run_id: str
    process: OperatorProcess
    namespaces: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.process.webhook_port

    @property
    def config_name(self) -> str:
        assert self.process.webhook is not None
        return self.process.webhook.config_name

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
        return self.process.log_text()[-4000:]


def webhook_operator(sandbox: Sandbox, run_id: str, watched: str, label: str, config_name: str) -> OperatorProcess:
    """An operator watching ``adm-<watched>-*`` whose webhook checks namespaces labelled ``label``; it keeps its CA
    in the run's Secret, so a second one with the same Secret serves under the same CA."""
    webhook = Webhook(config_name, label, cert_secret=f"adm-{run_id}-system/llama-operator-webhook-tls")
    return OperatorProcess(sandbox, f"adm-{watched}-*", config_name.removesuffix(".llamaops.dev"), webhook=webhook)


def webhook_configuration(operator: Operator) -> dict[str, Any] | None:
    result = operator.kubectl("get", "validatingwebhookconfiguration", operator.config_name, "-o", "json")
    return json.loads(result.stdout) if result.returncode == 0 else None


@contextmanager
def admission_run(sandbox: Sandbox) -> Iterator[Operator]:
    """The CRD applied, then an operator whose webhook refuses a probe in the run's namespaces; afterwards the
    run's LlamaDeployments, operator, configuration and namespaces are gone."""
    applied = sandbox.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    assert "serverside-applied" in applied
    sandbox.kubectl("wait", "--for=condition=Established", "crd/llamadeployments.llamaops.dev", "--timeout=60s")
    run_id = uuid.uuid4().hex[:6]
    process = webhook_operator(sandbox, run_id, run_id, f"{LABEL}={run_id}", f"adm-{run_id}.llamaops.dev")
    operator = Operator(sandbox, run_id, process)
    try:
        operator.new_namespace("system", labelled=False)  # holds the certificate Secret
        process.start()
        probe = operator.new_namespace("probe")

        def refuses() -> bool:
            assert process.proc is not None
            if process.proc.poll() is not None:
                pytest.fail(f"the operator exited ({process.proc.returncode}):\n{operator.operator_log()}")
            result = operator.apply(example("invalid-llama4-tp5.yaml", None), probe, "--dry-run=server")
            return DENIED in result.stderr

        wait_for("the webhook to refuse a TP=5 probe", refuses, timeout=120)
        yield operator
    finally:
        # Deleted while the operator runs, so any finalizer of its reconcile handlers is taken off.
        for namespace in operator.namespaces:
            operator.kubectl("delete", "llamadeployments", "--all", "-n", namespace, "--timeout=60s")
        process.close()
        core = client.CoreV1Api(sandbox.api)
        for namespace in operator.namespaces:
            core.delete_namespace(namespace)
