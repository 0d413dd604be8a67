"""A spec the planner passes but whose rendered Deployment the API server refuses (here a ValidatingAdmissionPolicy
answering 422, as a cluster's own policy would): the operator says so in status with a finding code, tries again
only after a minute rather than every 10 s, and the next spec change reconciles at once."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import yaml

from tests.integration.conftest import Sandbox, make_namespace, wait_for
from tests.integration.llamas import Llamas, example
from tests.integration.operator_process import OperatorProcess

pytestmark = pytest.mark.integration

REFUSE = "example.com/refuse-me"


def _policy(name: str, namespace: str) -> str:
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": ["apps"],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["deployments"],
                    }
                ]
            },
            "validations": [
                {
                    "expression": f"!has(object.spec.template.metadata.annotations) || "
                    f"!('{REFUSE}' in object.spec.template.metadata.annotations)",
                    "reason": "Invalid",  # 422, as for a field the API server does not allow
                    "message": "pods annotated refuse-me are not allowed here",
                }
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}},
        },
    }
    return yaml.safe_dump_all([policy, binding])


@pytest.fixture
def refusing(sandbox: Sandbox, llama_crd: str) -> Iterator[tuple[Llamas, OperatorProcess]]:
    namespace = make_namespace(sandbox, "refused-child")
    name = f"llamaops-test-{namespace}"
    applied = sandbox.try_kubectl("apply", "-f", "-", stdin=_policy(name, namespace))
    assert applied.returncode == 0, applied.stderr
    llamas = Llamas(sandbox, namespace)
    try:
        with OperatorProcess(sandbox, "refused-child-*", "refused-child") as operator:
            yield llamas, operator
    finally:
        sandbox.try_kubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", name)
        llamas.core.delete_namespace(namespace)


def test_a_refused_child_is_reported_once_and_the_next_spec_change_recovers(refusing: tuple[Llamas, OperatorProcess]):
    llamas, operator = refusing
    body = example("llama31-8b-h100.yaml", llamas.namespace)
    body["spec"]["podMetadata"] = {"annotations": {REFUSE: "yes"}}
    refusal = "the API server refused the Deployment (422)"
    before = operator.log_text().count(refusal)  # the log file outlives earlier runs of this test
    llamas.create(body)

    status = wait_for(
        "the refusal in status", lambda: (s := llamas.status("llama31-8b")).get("phase") == "Invalid" and s
    )
    (finding,) = [f for f in status["findings"] if f["code"] == "rejected_by_apiserver"]
    assert "pods annotated refuse-me are not allowed here" in finding["message"]
    assert finding["severity"] == "error"
    validated = next(c for c in status["conditions"] if c["type"] == "Validated")
    assert validated["status"] == "False"
    assert "rejected_by_apiserver" in validated["message"]
    assert llamas.deployment("llama31-8b") is None
    # Not retried at the usual 10 s: the refusal waits a minute.
    time.sleep(15)
    assert operator.log_text().count(refusal) - before == 1
    assert llamas.status("llama31-8b")["phase"] == "Invalid"

    llamas.patch_spec("llama31-8b", {"podMetadata": {"annotations": {REFUSE: None, "team": "research"}}})
    status = llamas.wait_phase("llama31-8b", "Running", timeout=120)
    assert not [f for f in status.get("findings", []) if f["code"] == "rejected_by_apiserver"]
