"""The control plane is real: version, garbage collection, and CRD validation rules (CEL)."""

from __future__ import annotations

import json
import uuid

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from llamaops_sandbox import pins
from tests.integration.conftest import Sandbox, wait_for

pytestmark = pytest.mark.integration


def test_server_reports_the_pinned_kubernetes_release(sandbox: Sandbox):
    version = json.loads(sandbox.kubectl("version", "-o", "json"))["serverVersion"]
    pinned = pins.version(sandbox.layout.repo, pins.KUBERNETES)  # e2e/go.mod
    assert version["gitVersion"] == pinned
    assert (version["major"], version["minor"]) == tuple(pinned.removeprefix("v").split(".")[:2])


def test_deleting_an_owner_garbage_collects_its_children(sandbox: Sandbox, namespace: str):
    core = client.CoreV1Api(sandbox.api)
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    for i in range(3):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": f"child-{i}", "ownerReferences": [ref]}})

    core.delete_namespaced_config_map("owner", namespace, propagation_policy="Background")

    def children() -> list[str]:
        return [
            c.metadata.name
            for c in core.list_namespaced_config_map(namespace).items
            if c.metadata.name != "kube-root-ca.crt"
        ]

    wait_for("children collected", lambda: children() == [] or None, timeout=60)


def test_deleting_a_deployment_removes_its_replicaset_and_pods(sandbox: Sandbox, namespace: str):
    apps, core = client.AppsV1Api(sandbox.api), client.CoreV1Api(sandbox.api)
    labels = {"app": "web"}
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
            },
        },
    )
    wait_for("2 pods", lambda: len(core.list_namespaced_pod(namespace).items) == 2)
    apps.delete_namespaced_deployment("web", namespace, propagation_policy="Background")
    wait_for("replicasets gone", lambda: not apps.list_namespaced_replica_set(namespace).items)
    wait_for("pods gone", lambda: not core.list_namespaced_pod(namespace).items)


def test_crd_validation_rule_rejects_a_violating_object(sandbox: Sandbox, namespace: str):
    ext = client.ApiextensionsV1Api(sandbox.api)
    custom = client.CustomObjectsApi(sandbox.api)
    group, plural = f"t{uuid.uuid4().hex[:8]}.llamaops.dev", "widgets"
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {"replicas": {"type": "integer"}, "maxReplicas": {"type": "integer"}},
                "x-kubernetes-validations": [
                    {"rule": "self.replicas <= self.maxReplicas", "message": "replicas must not exceed maxReplicas"}
                ],
            }
        },
    }
    ext.create_custom_resource_definition(
        {
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {
                "group": group,
                "scope": "Namespaced",
                "names": {"plural": plural, "singular": "widget", "kind": "Widget"},
                "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": schema}}],
            },
        }
    )
    try:

        def established() -> bool:
            crd = ext.read_custom_resource_definition(f"{plural}.{group}")
            return any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])

        wait_for("CRD established", established, timeout=60)

        def create(replicas: int, name: str) -> object:
            body = {
                "apiVersion": f"{group}/v1",
                "kind": "Widget",
                "metadata": {"name": name},
                "spec": {"replicas": replicas, "maxReplicas": 3},
            }
            return custom.create_namespaced_custom_object(group, "v1", namespace, plural, body)

        def accepted() -> bool:
            try:
                create(2, "ok")
            except ApiException as error:
                if error.status == 404:  # discovery of a new CRD can lag Established by a moment
                    return False
                raise
            return True

        wait_for("valid widget accepted", accepted, timeout=30)
        with pytest.raises(ApiException) as rejected:
            create(5, "too-many")
        assert rejected.value.status == 422
        assert "replicas must not exceed maxReplicas" in rejected.value.body
    finally:
        ext.delete_custom_resource_definition(f"{plural}.{group}")
