"""The pure builders: a planned LlamaDeployment becomes the manifests the operator applies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from llama_operator.api import LlamaDeployment
from llama_operator.planning import validate
from llama_operator.planning.rollout import STARTUP_MAX_S
from llama_operator.render import Owner, children
from llama_operator.render.deployment import (
    STARTUP_PROBE_PERIOD_S,
    pull_policy,
    startup_failure_threshold,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
OWNER = Owner("llama4-scout", "serving", "uid-1", 3)


def planned(name: str, **spec_changes: Any) -> tuple[LlamaDeployment, Any]:
    document = yaml.safe_load((EXAMPLES / name).read_text())
    document["spec"].update(spec_changes)
    result = validate(document)
    assert result.valid, result.errors
    return LlamaDeployment.model_validate(document), result


def render(name: str = "llama4-scout.yaml", *, service_monitors: bool = False, **changes: Any) -> dict[str, Any]:
    resource, result = planned(name, **changes)
    items = children(OWNER, resource.spec, result.effective, result.plan, service_monitors=service_monitors)
    return {item["kind"]: item for item in items}


def test_children_are_owned_labelled_and_in_the_owner_namespace():
    items = render()
    assert list(items) == ["Service", "Deployment", "PodDisruptionBudget"]
    for item in items.values():
        meta = item["metadata"]
        assert meta["namespace"] == "serving"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "llama-operator"
        assert meta["labels"]["llamaops.dev/deployment"] == "llama4-scout"
        assert meta["annotations"]["llamaops.dev/spec-generation"] == "3"
        (ref,) = meta["ownerReferences"]
        assert ref == {
            "apiVersion": "llamaops.dev/v1alpha1",
            "kind": "LlamaDeployment",
            "name": "llama4-scout",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }


def test_deployment_runs_the_plan_on_the_right_gpus():
    resource, result = planned("llama4-scout.yaml")
    deployment = render()["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == result.effective.image
    assert container["args"] == result.effective.args
    assert "--tensor-parallel-size" in container["args"]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "8"}
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}} in pod["volumes"]
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    assert deployment["spec"]["replicas"] == resource.spec.replicas
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}


def test_a_moving_tag_is_pulled_always_a_digest_only_when_missing():
    (container,) = render()["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["image"].endswith("-llamaops")  # the patched image's tag moves with each rebuild
    assert container["imagePullPolicy"] == "Always"
    assert pull_policy("ghcr.io/llamaops/vllm@sha256:" + "a" * 64) == "IfNotPresent"
    assert pull_policy("registry.local:5000/llamaops/vllm:0.32.0-llamaops@sha256:" + "b" * 64) == "IfNotPresent"


def test_hf_token_is_a_secret_reference_never_a_value():
    container = render()["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    (token,) = [env for env in container["env"] if env["name"] == "HF_TOKEN"]
    assert token == {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}}
    without = render("llama31-8b-l40s.yaml")["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert all(env["name"] != "HF_TOKEN" for env in without["env"])


def test_startup_probe_grows_with_the_weights_and_is_capped():
    _, scout = planned("llama4-scout.yaml")
    _, small = planned("llama31-8b-h100.yaml")
    assert startup_failure_threshold(scout.plan, 8) > startup_failure_threshold(small.plan, 1) >= 600 // 2
    assert startup_failure_threshold(scout.plan, 10_000) * STARTUP_PROBE_PERIOD_S == STARTUP_MAX_S


def test_pvc_source_mounts_the_claim_read_only_where_vllm_looks():
    deployment = render("custom-model-inline.yaml")["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    model = next(v for v in pod["volumes"] if v["name"] == "model")
    assert model["persistentVolumeClaim"]["readOnly"] is True
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "model")
    model_arg = pod["containers"][0]["args"][pod["containers"][0]["args"].index("--model") + 1]
    assert model_arg.startswith(mount["mountPath"] + "/")


def test_scale_keeps_the_template_and_a_config_change_rolls_it():
    base = render()["Deployment"]
    scaled = render(replicas=3)["Deployment"]
    assert scaled["spec"]["replicas"] == 3
    assert scaled["spec"]["template"] == base["spec"]["template"]
    changed = render(
        engine={**yaml.safe_load((EXAMPLES / "llama4-scout.yaml").read_text())["spec"]["engine"], "maxModelLen": 524288}
    )["Deployment"]
    key = "llamaops.dev/config-hash"
    assert (
        changed["spec"]["template"]["metadata"]["annotations"][key]
        != (base["spec"]["template"]["metadata"]["annotations"][key])
    )


def test_pod_metadata_is_added_but_never_replaces_the_selector_labels():
    items = render(podMetadata={"labels": {"llamaops.dev/deployment": "other", "team": "a"}, "annotations": {"x": "1"}})
    template = items["Deployment"]["spec"]["template"]["metadata"]
    assert template["labels"]["team"] == "a"
    assert template["labels"]["llamaops.dev/deployment"] == "llama4-scout"
    assert template["annotations"]["x"] == "1"
    assert items["Deployment"]["spec"]["selector"]["matchLabels"].items() <= template["labels"].items()


def test_service_monitor_only_when_the_crds_exist_and_it_is_asked_for():
    monitoring = {"serviceMonitor": True}
    assert "ServiceMonitor" not in render(monitoring=monitoring)
    assert "ServiceMonitor" not in render(service_monitors=True)
    monitor = render(service_monitors=True, monitoring=monitoring)["ServiceMonitor"]
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]
    assert monitor["spec"]["selector"]["matchLabels"]["llamaops.dev/deployment"] == "llama4-scout"


def test_service_and_pdb_select_the_pods():
    items = render()
    selector = items["Deployment"]["spec"]["selector"]["matchLabels"]
    assert items["Service"]["spec"]["selector"] == selector
    assert items["Service"]["spec"]["ports"] == [
        {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}
    ]
    assert items["PodDisruptionBudget"]["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": selector}}
