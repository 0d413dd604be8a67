"""The serving Deployment of a single-node LlamaDeployment (TP x PP GPUs of one node per replica)."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from llama_operator.api import EffectiveConfig, LlamaDeploymentSpec, MemoryPlan
from llama_operator.planning.args import MODEL_MOUNT
from llama_operator.planning.rollout import startup_budget_s
from llama_operator.render.labels import (
    CONFIG_HASH_ANNOTATION,
    OPENAI_PORT,
    PORT_NAME,
    Owner,
    common_labels,
    metadata,
    selector_labels,
)

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
CONTAINER = "vllm"
# Serving pods run as the patched image's non-root user (images/vllm/Dockerfile), also for an upstream image that
# would run as root. Its home is an emptyDir, so the caches vLLM, Triton and torch.compile write under $HOME work
# for any image; USER spares torch's getpass.getuser() a passwd lookup of a UID the image may not know.
RUN_AS_USER = 2000
USER_NAME = "vllm"
HOME = "/home/vllm"
HF_HOME = f"{HOME}/.cache/huggingface"
# The restricted Pod Security Standard. The root filesystem stays writable: vLLM, Ray and their JIT compilers
# write to /tmp and other places inside the image.
POD_SECURITY_CONTEXT = {
    "runAsNonRoot": True,
    "runAsUser": RUN_AS_USER,
    "runAsGroup": RUN_AS_USER,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY_CONTEXT = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
# NCCL and PyTorch's dataloader share tensors through /dev/shm; the container runtime's 64 MiB default is too small.
SHM_SIZE = "16Gi"
PROBE_PERIOD_S = 10
# The start-up probe asks often: a replica (a fresh one after a remediation too) serves within 2 s of vLLM being up,
# not up to 10 s later. /health is cheap; the kubelet's budget below stays the same number of seconds.
STARTUP_PROBE_PERIOD_S = 2


def startup_failure_threshold(plan: MemoryPlan | None, gpus: int) -> int:
    return max(1, startup_budget_s(plan, gpus) // STARTUP_PROBE_PERIOD_S)


def _model_volume(spec: LlamaDeploymentSpec) -> tuple[dict[str, Any], dict[str, Any]]:
    """The weights volume and its mount: a PVC for pvc:// sources, otherwise an emptyDir download cache."""
    source = spec.model.source or ""
    if source.startswith("pvc://"):
        claim = source.removeprefix("pvc://").partition("/")[0]
        volume = {"name": "model", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        # The claim's root at MODEL_MOUNT: vLLM's --model is MODEL_MOUNT/<path> (planning.args.model_argument).
        return volume, {"name": "model", "mountPath": MODEL_MOUNT, "readOnly": True}
    if source.startswith("s3://"):
        return {"name": "model", "emptyDir": {}}, {"name": "model", "mountPath": MODEL_MOUNT}
    return {"name": "model", "emptyDir": {}}, {"name": "model", "mountPath": HF_HOME}


def _env(spec: LlamaDeploymentSpec) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "HOME", "value": HOME},
        {"name": "USER", "value": USER_NAME},
        {"name": "HF_HOME", "value": HF_HOME},
    ]
    ref = spec.model.token_secret_ref
    if ref is not None:
        # Only a reference: the token itself never enters the manifest, the status or the operator's logs.
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    return env


def _probe(path: str, period: int, failures: int, timeout: int = 5) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": PORT_NAME},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
    }


def _pod_annotations(spec: LlamaDeploymentSpec, config_hash: str) -> dict[str, str]:
    annotations = dict(spec.pod_metadata.annotations)
    if spec.monitoring.enabled:
        annotations.update(
            {"prometheus.io/scrape": "true", "prometheus.io/port": str(OPENAI_PORT), "prometheus.io/path": "/metrics"}
        )
    annotations[CONFIG_HASH_ANNOTATION] = config_hash
    return annotations


def config_hash(pod_spec: dict[str, Any], annotations: dict[str, str]) -> str:
    """A short digest of everything in the pod template, so any change to it is visible at a glance."""
    text = json.dumps({"spec": pod_spec, "annotations": annotations}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def pull_policy(image: str) -> str:
    """IfNotPresent for an image pinned by digest (it cannot change), Always for a tag: the patched image's
    ``-llamaops`` tag moves with each rebuild, and a node that kept an old copy would otherwise run it beside
    replicas on the new one. Always re-checks the manifest only; unchanged layers are not pulled again."""
    return "IfNotPresent" if "@sha256:" in image else "Always"


def pod_spec(spec: LlamaDeploymentSpec, effective: EffectiveConfig, plan: MemoryPlan | None) -> dict[str, Any]:
    gpus = effective.gpus_per_replica
    volume, mount = _model_volume(spec)
    resources = spec.resources
    container = {
        "name": CONTAINER,
        "image": effective.image,
        "imagePullPolicy": pull_policy(effective.image),
        "args": list(effective.args),
        "ports": [{"name": PORT_NAME, "containerPort": OPENAI_PORT, "protocol": "TCP"}],
        "env": _env(spec),
        "resources": {"limits": {GPU_RESOURCE: str(gpus)}, "requests": {GPU_RESOURCE: str(gpus)}},
        # home first: the Hugging Face cache of hf:// sources is mounted inside it.
        "volumeMounts": [
            {"name": "home", "mountPath": HOME},
            mount,
            {"name": "dshm", "mountPath": "/dev/shm"},  # noqa: S108 - the container's own
        ],
        "securityContext": copy.deepcopy(CONTAINER_SECURITY_CONTEXT),
        "startupProbe": _probe("/health", STARTUP_PROBE_PERIOD_S, startup_failure_threshold(plan, gpus)),
        "readinessProbe": _probe("/health", 5, 3),
        # A hung engine stops answering /health; give it a minute before restarting a costly model load.
        "livenessProbe": _probe("/health", PROBE_PERIOD_S, 6),
        # A crash's last log lines become the termination message, which the operator classifies.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    pod: dict[str, Any] = {
        "containers": [container],
        "nodeSelector": {**resources.node_selector, GPU_PRODUCT_LABEL: resources.gpu_product},
        "securityContext": copy.deepcopy(POD_SECURITY_CONTEXT),
        "volumes": [
            {"name": "home", "emptyDir": {}},
            volume,
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": SHM_SIZE}},
        ],
        # vLLM drains running requests on SIGTERM.
        "terminationGracePeriodSeconds": 60,
        "enableServiceLinks": False,
    }
    if resources.tolerations:
        pod["tolerations"] = [t.model_dump(by_alias=True, exclude_none=True) for t in resources.tolerations]
    return pod


def deployment(
    owner: Owner, spec: LlamaDeploymentSpec, effective: EffectiveConfig, plan: MemoryPlan | None
) -> dict[str, Any]:
    pod = pod_spec(spec, effective, plan)
    annotations = _pod_annotations(spec, "")
    annotations[CONFIG_HASH_ANNOTATION] = config_hash(pod, annotations)
    labels = {**spec.pod_metadata.labels, **common_labels(owner.name)}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(owner),
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": selector_labels(owner.name)},
            # A replica holds whole GPUs: replace pods one at a time without asking for spare GPUs.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
            "revisionHistoryLimit": 5,
            "template": {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod},
        },
    }
