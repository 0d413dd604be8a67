"""The admission webhook down (docs/admission.md, "When the webhook is down"): failurePolicy Fail refuses
LlamaDeployment creates and updates with the API server's "failed calling webhook" at once when nothing listens
(and after the 5 s timeout when the server hangs); deletes, scaling and the operator's status writes go through;
once the webhook is back, applies succeed.

Two real operator processes, both scoped to this run: one serves only the webhook (url mode, on a free loopback
port, its ValidatingWebhookConfiguration named for the run and limited to namespaces labelled with the run's id;
it watches namespaces that do not exist), the other reconciles the run's namespace without a webhook, so it keeps
working while the webhook process is stopped or killed.
"""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from kubernetes import client

from llamaops_sandbox import processes
from tests.integration.conftest import Sandbox, make_namespace, not_found_is_none, wait_for
from tests.integration.llamas import Llamas, llama
from tests.integration.operator_process import OperatorProcess, Webhook

pytestmark = pytest.mark.integration

LABEL = "llamaops.dev/webhook-down-test"
WEBHOOK = 'failed calling webhook "validate.llamaops.dev"'
DENIED = 'admission webhook "validate.llamaops.dev" denied the request'
KOPF_PATCH_REFUSED = "failed; will retry: PATCH"


@dataclass
class Run:
    sandbox: Sandbox
    id: str
    namespace: str
    webhook: OperatorProcess
    reconciler: OperatorProcess

    def kubectl(self, *args: str, stdin: str | None = None) -> tuple[subprocess.CompletedProcess[str], float]:
        """kubectl against the sandbox, and how long it took."""
        began = time.monotonic()
        result = self.sandbox.try_kubectl(*args, stdin=stdin)
        return result, time.monotonic() - began

    def apply(self, document: dict[str, Any], *flags: str) -> tuple[subprocess.CompletedProcess[str], float]:
        return self.kubectl("apply", "-n", self.namespace, "-f", "-", *flags, stdin=yaml.safe_dump(document))

    def exists(self, name: str) -> bool:
        return self.kubectl("get", "llamadeployment", name, "-n", self.namespace)[0].returncode == 0

    def webhook_answers(self) -> bool:
        """The webhook refuses an invalid spec (server-side dry run: nothing is stored)."""
        assert self.webhook.proc is not None
        if self.webhook.proc.poll() is not None:
            pytest.fail(f"the webhook process exited:\n{processes.tail(self.webhook.log)}")
        invalid = llama("probe", self.namespace)
        invalid["spec"]["engine"]["tensorParallelSize"] = 3  # 32 heads do not split 3 ways
        return DENIED in self.apply(invalid, "--dry-run=server")[0].stderr

    def configuration(self) -> dict[str, Any] | None:
        assert self.webhook.webhook is not None
        api = client.AdmissionregistrationV1Api(self.sandbox.api)
        body = not_found_is_none(api.read_validating_webhook_configuration, self.webhook.webhook.config_name)
        return None if body is None else dict(body.to_dict())


def kopf_patch_refused(operator: OperatorProcess) -> bool:
    return any(KOPF_PATCH_REFUSED in line and WEBHOOK in line for line in operator.log_text().splitlines())


@pytest.fixture
def run(sandbox: Sandbox, llama_crd: str) -> Iterator[Run]:
    run_id = uuid.uuid4().hex[:6]
    namespace = make_namespace(sandbox, f"whd-{run_id}")
    sandbox.kubectl("label", "namespace", namespace, f"{LABEL}={run_id}")
    # It serves only the webhook: it watches namespaces that do not exist.
    webhook = OperatorProcess(
        sandbox,
        f"whd-{run_id}-none-*",
        f"whd-{run_id}-webhook",
        webhook=Webhook(f"whd-{run_id}.llamaops.dev", f"{LABEL}={run_id}"),
    )
    reconciler = OperatorProcess(sandbox, f"whd-{run_id}-*", f"whd-{run_id}-reconcile")
    current = Run(sandbox, run_id, namespace, webhook, reconciler)
    try:
        reconciler.start()
        webhook.start()
        wait_for("the webhook to answer", current.webhook_answers, timeout=120)
        yield current
    finally:
        if webhook.proc is not None and webhook.proc.poll() is None:
            webhook.proc.send_signal(signal.SIGCONT)  # in case a failure left it stopped
        webhook.close()
        try:
            Llamas(sandbox, namespace).delete_namespace()
        finally:
            reconciler.stop()


def test_writes_are_refused_at_once_while_the_webhook_is_down_and_accepted_once_it_is_back(run: Run) -> None:
    llamas = Llamas(run.sandbox, run.namespace)
    created, _ = run.apply(llama("before", run.namespace))
    assert created.returncode == 0, created.stderr
    wait_for("before Running", lambda: llamas.running("before"))

    # A hung webhook (the process stopped, its socket still listening): the API server waits out timeoutSeconds.
    assert run.webhook.proc is not None
    run.webhook.proc.send_signal(signal.SIGSTOP)
    try:
        hung, hung_s = run.apply(llama("during-hang", run.namespace))
    finally:
        run.webhook.proc.send_signal(signal.SIGCONT)
    print(f"\nhung webhook: refused after {hung_s:.1f} s: {hung.stderr.strip()}")
    assert hung.returncode != 0
    assert WEBHOOK in hung.stderr
    assert "context deadline exceeded" in hung.stderr or "timeout" in hung.stderr.lower()
    assert not run.exists("during-hang")

    # The webhook process dies: its configuration (failurePolicy Fail) stays, nothing listens on the port.
    run.webhook.proc.kill()
    run.webhook.proc.wait()
    assert run.configuration() is not None
    refused, refused_s = run.apply(llama("during", run.namespace))
    print(f"webhook down: create refused after {refused_s:.2f} s: {refused.stderr.strip()}")
    assert refused.returncode != 0
    assert WEBHOOK in refused.stderr
    assert "connection refused" in refused.stderr  # refused at once, not a hang
    assert not run.exists("during")
    # Updates are refused too, a spec change as well as a label (the webhook is asked about every UPDATE).
    changed = llama("before", run.namespace, max_num_seqs=32)
    update, _ = run.apply(changed)
    assert WEBHOOK in update.stderr
    label, _ = run.kubectl("label", "llamadeployment", "before", "-n", run.namespace, "team=research")
    assert WEBHOOK in label.stderr
    assert llamas.get("before")["spec"]["engine"]["maxNumSeqs"] == 64

    # Scaling goes through the scale subresource, which the webhook does not cover; the operator reconciles
    # it and writes status through the status subresource, which it does not cover either.
    scaled, _ = run.kubectl("scale", "llamadeployment", "before", "-n", run.namespace, "--replicas=2")
    assert scaled.returncode == 0, scaled.stderr

    def scaled_status() -> dict[str, Any] | None:
        body = llamas.get("before")
        status: dict[str, Any] = body.get("status") or {}
        current = status.get("observedGeneration") == body["metadata"]["generation"]
        return status if current and status.get("replicas") == 2 else None

    status = wait_for("before reconciled to 2 replicas while the webhook is down", scaled_status)
    print(f"webhook down: the operator wrote status (phase {status['phase']}, observedGeneration "
          f"{status['observedGeneration']}, replicas {status['replicas']})")  # fmt: skip
    # kopf's own bookkeeping is an UPDATE of the object (its annotations): refused, and retried.
    wait_for("kopf's annotation patch refused", lambda: kopf_patch_refused(run.reconciler))
    # Deletes are not checked at all.
    deleted, deleted_s = run.kubectl("delete", "llamadeployment", "before", "-n", run.namespace, "--wait=true")
    assert deleted.returncode == 0, deleted.stderr
    print(f"webhook down: delete took {deleted_s:.2f} s")
    assert not run.exists("before")

    # Back: the restarted process re-applies its configuration with its new CA; applies succeed again.
    began = time.monotonic()
    run.webhook.start()
    wait_for("the webhook to answer again", run.webhook_answers, timeout=120)
    print(f"webhook back: answering {time.monotonic() - began:.1f} s after the restart")
    accepted, _ = run.apply(llama("during", run.namespace))
    assert accepted.returncode == 0, accepted.stderr
    assert "created" in accepted.stdout
    wait_for("during Running", lambda: llamas.running("during"))
    assert run.reconciler.proc is not None
    assert run.reconciler.proc.poll() is None  # the outage cost the reconciling operator retries, not a crash
