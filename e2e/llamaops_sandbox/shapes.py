"""Fake GPU node pools: a shape file (YAML) becomes Node manifests that KWOK manages (pure)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# KWOK manages only nodes carrying this annotation (`kwok --manage-nodes-with-annotation-selector`).
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
GPU_RESOURCE = "nvidia.com/gpu"


class GPU(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product: str = Field(min_length=1)
    count: int = Field(ge=1)
    memoryMiB: int = Field(ge=1)
    family: str | None = None
    computeMajor: int | None = None
    computeMinor: int | None = None


class Pool(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=40)
    count: int = Field(ge=0)
    gpu: GPU
    cpu: str = "192"
    memory: str = "2048Gi"
    pods: int = Field(default=110, ge=1)
    labels: dict[str, str] = Field(default_factory=dict)


class Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pools: list[Pool]


def gpu_labels(gpu: GPU) -> dict[str, str]:
    """The labels NVIDIA GPU feature discovery puts on a node with these GPUs."""
    labels = {
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.product": gpu.product,
        "nvidia.com/gpu.memory": str(gpu.memoryMiB),
        "nvidia.com/gpu.count": str(gpu.count),
    }
    if gpu.family:
        labels["nvidia.com/gpu.family"] = gpu.family
    if gpu.computeMajor is not None:
        labels["nvidia.com/gpu.compute.major"] = str(gpu.computeMajor)
    if gpu.computeMinor is not None:
        labels["nvidia.com/gpu.compute.minor"] = str(gpu.computeMinor)
    return labels


def node_manifest(pool: Pool, index: int) -> dict[str, Any]:
    name = f"{pool.name}-{index}"
    resources = {
        "cpu": pool.cpu,
        "memory": pool.memory,
        "pods": str(pool.pods),
        "ephemeral-storage": "7Ti",
        GPU_RESOURCE: str(pool.gpu.count),
    }
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
        "llamaops.dev/sandbox-pool": pool.name,
        **gpu_labels(pool.gpu),
        **pool.labels,
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": {KWOK_NODE_ANNOTATION: "fake"}},
        # Status is accepted on create (the kubelet registers nodes this way); KWOK keeps it up to date.
        "status": {"capacity": resources, "allocatable": dict(resources)},
    }


def nodes(shape: Shape) -> list[dict[str, Any]]:
    """Every node of every pool, in pool order."""
    return [node_manifest(pool, i) for pool in shape.pools for i in range(pool.count)]


def parse_shape(data: Any) -> Shape:
    """Validate a loaded shape file; raises pydantic.ValidationError naming the bad field."""
    shape = Shape.model_validate(data)
    names = [p.name for p in shape.pools]
    if len(set(names)) != len(names):
        raise ValueError(f"pool names must be unique: {names}")
    return shape
