"""Reconcile in the sandbox: a real operator process turns LlamaDeployments into serving workloads."""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.integration.conftest import Sandbox, make_namespace, wait_for
from tests.integration.llamas import GROUP, PLURAL, VERSION, Llamas, example, watched_namespace
from tests.integration.operator_process import OperatorProcess

pytestmark = pytest.mark.integration

PATTERN = "rec-*"


@pytest.fixture(scope="module")
def operator(sandbox: Sandbox, llama_crd: str) -> Iterator[OperatorProcess]:
    # The port the sandbox's Prometheus scrapes as the llama-operator job.
    with OperatorProcess(sandbox, PATTERN, "reconcile", metrics_port=sandbox.state.ports.operator_metrics) as process:
        yield process


@pytest.fixture
def ns(sandbox: Sandbox, operator: OperatorProcess, request: pytest.FixtureRequest) -> Iterator[str]:
    with watched_namespace(sandbox, "rec", request) as llamas:
        yield llamas.namespace


def running_8b(sandbox: Sandbox, ns: str) -> Llamas:
    """The llama31-8b example created in ``ns`` and Running."""
    llamas = Llamas(sandbox, ns)
    llamas.create(example("llama31-8b-h100.yaml", ns))
    llamas.wait_phase("llama31-8b", "Running")
    return llamas


def test_scout_example_becomes_available_with_the_planned_workload(sandbox: Sandbox, ns: str):
    llamas = Llamas(sandbox, ns)
    body = example("llama4-scout.yaml", ns)
    llamas.create(body)
    status = llamas.wait_phase("llama4-scout", "Running")

    conditions = {c["type"]: c for c in status["conditions"]}
    assert {t: conditions[t]["status"] for t in ("Validated", "Progressing", "Available", "Degraded")} == {
        "Validated": "True",
        "Progressing": "False",
        "Available": "True",
        "Degraded": "False",
    }
    generation = llamas.get("llama4-scout")["metadata"]["generation"]
    for condition in conditions.values():
        assert condition["observedGeneration"] == generation
        assert condition["reason"]
        assert condition["lastTransitionTime"]
    assert status["replicas"] == status["readyReplicas"] == 1
    assert status["endpoint"] == f"http://llama4-scout.{ns}.svc:8000/v1"
    assert status["effective"]["tensorParallelSize"] == 8
    assert status["effective"]["gpusPerReplica"] == 8
    assert status["plan"]["kvCacheGib"] > 0
    good = wait_for(
        "lastKnownGood", lambda: llamas.status("llama4-scout").get("lastKnownGood"), timeout=60
    )  # recorded once the configuration has served for a while
    assert good["generation"] == generation
    assert good["args"] == status["effective"]["args"]
    assert {f["code"] for f in status["findings"]} >= {"memory_plan"}

    deployment = llamas.deployment("llama4-scout")
    assert deployment is not None
    pod = deployment.spec.template.spec
    (container,) = pod.containers
    assert container.image == status["effective"]["image"]
    assert container.args == status["effective"]["args"]
    assert container.resources.limits == {"nvidia.com/gpu": "8"}
    assert pod.node_selector == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert [t.key for t in pod.tolerations] == ["nvidia.com/gpu"]
    assert container.termination_message_policy == "FallbackToLogsOnError"
    assert container.startup_probe.http_get.path == "/health"
    assert container.startup_probe.failure_threshold * container.startup_probe.period_seconds >= 600
    assert container.readiness_probe.http_get.path == container.liveness_probe.http_get.path == "/health"
    shm = next(v for v in pod.volumes if v.name == "dshm")
    assert shm.empty_dir.medium == "Memory"
    assert deployment.spec.strategy.rolling_update.max_surge == 0
    (token,) = [e for e in container.env if e.name == "HF_TOKEN"]
    assert token.value is None
    assert token.value_from.secret_key_ref.name == "hf-token"
    assert deployment.metadata.annotations["llamaops.dev/spec-generation"] == str(generation)

    # The pod really runs on a fake H100 node.
    (running,) = llamas.core.list_namespaced_pod(ns, label_selector="llamaops.dev/deployment=llama4-scout").items
    node = llamas.core.read_node(running.spec.node_name)
    assert node.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"

    uid = llamas.get("llama4-scout")["metadata"]["uid"]
    service = llamas.core.read_namespaced_service("llama4-scout", ns)
    pdb = llamas.policy.read_namespaced_pod_disruption_budget("llama4-scout", ns)
    for child in (deployment, service, pdb):
        (ref,) = child.metadata.owner_references
        assert (ref.kind, ref.uid, ref.controller) == ("LlamaDeployment", uid, True)
        assert "llama-operator" in {m.manager for m in child.metadata.managed_fields}
    assert service.spec.ports[0].port == 8000

    reasons = wait_for(
        "Available event", lambda: {e.reason for e in llamas.events("llama4-scout")} >= {"MinimumReplicasAvailable"}
    )
    assert reasons


def test_kubectl_shows_printer_columns_and_explains_the_engine(sandbox: Sandbox, ns: str):
    llamas = Llamas(sandbox, ns)
    body = example("llama31-8b-h100.yaml", ns)
    # Asked for, but the sandbox has no Prometheus-Operator CRDs: skipped cleanly, the rest still deploys.
    body["spec"]["monitoring"] = {"serviceMonitor": True}
    llamas.create(body)
    llamas.wait_phase("llama31-8b", "Running")
    table = sandbox.kubectl("get", "llama", "-n", ns)
    header, row = table.splitlines()[:2]
    for column in ("MODEL", "TP", "MAX LEN", "READY", "PHASE", "AGE"):
        assert column in header
    assert "meta-llama/Llama-3.1-8B-Instruct" in row
    assert "Running" in row
    assert "131072" in row
    explained = sandbox.kubectl("explain", "llamadeployment.spec.engine")
    assert "tensorParallelSize" in explained
    assert "GPUs a layer is split over" in explained


def test_invalid_spec_deploys_nothing_without_retry_storm_and_recovers(
    sandbox: Sandbox, ns: str, operator: OperatorProcess
):
    llamas = Llamas(sandbox, ns)
    body = example("invalid-llama4-tp5.yaml", ns)
    name = body["metadata"]["name"]
    llamas.create(body)
    status = llamas.wait_phase(name, "Invalid")
    validated = next(c for c in status["conditions"] if c["type"] == "Validated")
    assert validated["status"] == "False"
    assert validated["reason"] == "ValidationFailed"
    assert "tp_incompatible_with_kv_heads" in validated["message"]
    assert any(f["code"] == "tp_incompatible_with_kv_heads" and f["fix"] for f in status["findings"])
    assert llamas.deployment(name) is None
    assert not llamas.core.list_namespaced_service(ns).items

    # No retry storm: the invalid generation is handled once, then left alone.
    resource_version = llamas.get(name)["metadata"]["resourceVersion"]
    time.sleep(5)
    assert llamas.get(name)["metadata"]["resourceVersion"] == resource_version
    assert len(re.findall(rf"{ns}/{name}: generation 1 is invalid", operator.log_text())) == 1
    assert wait_for("a ValidationFailed event", lambda: "ValidationFailed" in {e.reason for e in llamas.events(name)})

    llamas.patch_spec(name, {"engine": {"tensorParallelSize": 8}})
    status = llamas.wait_phase(name, "Running")
    assert next(c for c in status["conditions"] if c["type"] == "Validated")["status"] == "True"
    assert llamas.deployment(name) is not None


def test_scale_subresource_and_spec_change(sandbox: Sandbox, ns: str):
    llamas = running_8b(sandbox, ns)
    before = llamas.deployment("llama31-8b")
    assert before is not None
    template_hash = before.spec.template.metadata.annotations["llamaops.dev/config-hash"]

    sandbox.kubectl("scale", "llama/llama31-8b", "-n", ns, "--replicas=2")
    status = wait_for(
        "2 ready replicas",
        lambda: (s := llamas.status("llama31-8b")).get("readyReplicas") == 2 and s.get("phase") == "Running" and s,
    )
    assert status["replicas"] == 2
    scaled = llamas.deployment("llama31-8b")
    assert scaled is not None
    assert scaled.spec.replicas == 2
    # Scaling does not roll the pods.
    assert scaled.spec.template.metadata.annotations["llamaops.dev/config-hash"] == template_hash
    scale = json.loads(
        sandbox.kubectl("get", "--raw", f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}/llama31-8b/scale")
    )
    assert scale["status"]["replicas"] == 2
    assert "llamaops.dev/deployment=llama31-8b" in scale["status"]["selector"]

    # AllAtOnce: the change goes to the Deployment itself (a Progressive change of two replicas, the default, runs
    # a canary first: test_rollout.py).
    llamas.patch_spec("llama31-8b", {"engine": {"maxModelLen": 65536}, "rollout": {"policy": "AllAtOnce"}})
    rolled = wait_for(
        "a new template",
        lambda: (
            (d := llamas.deployment("llama31-8b"))
            and d.spec.template.metadata.annotations["llamaops.dev/config-hash"] != template_hash
            and d
        ),
    )
    assert "65536" in rolled.spec.template.spec.containers[0].args
    status = llamas.wait_phase("llama31-8b", "Running")
    assert status["effective"]["maxModelLen"] == 65536
    wait_for(
        "lastKnownGood of the new generation",
        lambda: "65536" in (llamas.status("llama31-8b").get("lastKnownGood") or {}).get("args", []),
        timeout=60,
    )


def test_deleted_children_are_recreated(sandbox: Sandbox, ns: str):
    llamas = running_8b(sandbox, ns)
    old = llamas.deployment("llama31-8b")
    assert old is not None
    llamas.apps.delete_namespaced_deployment("llama31-8b", ns)
    llamas.core.delete_namespaced_service("llama31-8b", ns)
    llamas.policy.delete_namespaced_pod_disruption_budget("llama31-8b", ns)

    def recreated() -> bool:
        new = llamas.deployment("llama31-8b")
        services = llamas.core.list_namespaced_service(ns).items
        pdbs = llamas.policy.list_namespaced_pod_disruption_budget(ns).items
        return bool(new and new.metadata.uid != old.metadata.uid and services and pdbs)

    wait_for("children recreated", recreated, timeout=60)
    llamas.wait_phase("llama31-8b", "Running")


def test_deleting_the_llama_garbage_collects_children(sandbox: Sandbox, ns: str):
    llamas = running_8b(sandbox, ns)
    llamas.delete("llama31-8b")
    wait_for(
        "children gone",
        lambda: llamas.deployment("llama31-8b") is None and not llamas.core.list_namespaced_service(ns).items,
        timeout=60,
    )


def test_operator_restart_changes_nothing(sandbox: Sandbox, ns: str, operator: OperatorProcess):
    llamas = running_8b(sandbox, ns)
    # Settled: lastKnownGood is recorded once it has been Available 10 s, whether or not the operator restarts.
    wait_for("lastKnownGood", lambda: "lastKnownGood" in llamas.status("llama31-8b"), timeout=60)
    time.sleep(2)  # let the last Deployment status events settle
    deployment = llamas.deployment("llama31-8b")
    assert deployment is not None
    before = (deployment.metadata.generation, deployment.metadata.resource_version)
    status_before = copy.deepcopy(llamas.status("llama31-8b"))
    applied = f"{ns}/llama31-8b: applied"
    applies = operator.log_text().count(applied)

    operator.stop()
    operator.start()
    # kopf's resume handler runs on start for every existing object: wait until it has re-applied ours.
    wait_for("resume of llama31-8b", lambda: operator.log_text().count(applied) > applies, timeout=60)
    time.sleep(3)
    after = llamas.deployment("llama31-8b")
    assert after is not None
    assert (after.metadata.generation, after.metadata.resource_version) == before
    assert llamas.status("llama31-8b") == status_before


def test_operator_metrics_reach_prometheus(sandbox: Sandbox, ns: str, operator: OperatorProcess):
    llamas = Llamas(sandbox, ns)
    llamas.create(example("invalid-llama4-vllm083.yaml", ns))
    llamas.wait_phase(llamas.listed()[0]["metadata"]["name"], "Invalid")
    # The counters move when the handler returns, just after it has published status.
    text = wait_for(
        "reconcile counted",
        lambda: (
            (m := operator.metrics()) and re.search(r'^llamaops_reconcile_total\{result="invalid"\}', m, re.M) and m
        ),
        timeout=30,
    )
    assert re.search(r'^llamaops_reconcile_total\{result="invalid"\} [1-9]', text, re.M)
    assert re.search(r"^llamaops_reconcile_duration_seconds_count [1-9]", text, re.M)
    assert re.search(r'^llamaops_deployments\{phase="Invalid"\} [1-9]', text, re.M)
    assert 'llamaops_findings{code="chunked_local_attention_block_table_overrun",severity="error"}' in text
    series = wait_for(
        "operator metrics in Prometheus",
        lambda: sandbox.prometheus_query('llamaops_findings{code="chunked_local_attention_block_table_overrun"} > 0'),
        timeout=60,
        interval=1,
    )
    assert series[0]["metric"]["job"] == "llama-operator"


def service_monitor_crd() -> dict[str, Any]:
    """A stand-in for Prometheus-Operator's ServiceMonitor CRD: same group, version and names, open schema."""
    schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {"plural": "servicemonitors", "singular": "servicemonitor", "kind": "ServiceMonitor"},
            "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": schema}}],
        },
    }


def test_service_monitor_is_created_when_prometheus_operator_crds_exist(sandbox: Sandbox, llama_crd: str):
    ext = client.ApiextensionsV1Api(sandbox.api)
    ext.create_custom_resource_definition(service_monitor_crd())
    try:
        sandbox.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s", "crd/servicemonitors.monitoring.coreos.com"
        )
        # A fresh operator: it discovers the ServiceMonitor API at its first reconcile.
        with OperatorProcess(sandbox, "mon-*", "service-monitor"):
            llamas = Llamas(sandbox, make_namespace(sandbox, "mon-service-monitor"))
            try:
                body = example("llama31-8b-h100.yaml", llamas.namespace)
                body["spec"]["monitoring"] = {"serviceMonitor": True, "interval": "15s"}
                llamas.create(body)
                llamas.wait_phase("llama31-8b", "Running")
                monitor = wait_for(
                    "ServiceMonitor",
                    lambda: llamas.api.list_namespaced_custom_object(
                        "monitoring.coreos.com", "v1", llamas.namespace, "servicemonitors"
                    )["items"],
                )[0]
                assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s"}]
                assert monitor["metadata"]["ownerReferences"][0]["kind"] == "LlamaDeployment"
            finally:
                llamas.delete_namespace()  # while its operator runs
    finally:
        ext.delete_custom_resource_definition("servicemonitors.monitoring.coreos.com")
