"""GPUs seen on the cluster's nodes, from the labels GPU feature discovery (GFD) writes (pure).

For a product the catalog lacks, the node's ``nvidia.com/gpu.memory`` is what the catalog would hold: GFD copies
NVML's total memory in MiB, the figure nvidia-smi prints (k8s-device-plugin internal/lm/resource.go). The operator's
edge (handlers.nodes) keeps the nodes' labels; ``observed_gpus`` turns them into ``GpuFacts`` the planner can use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from llama_operator.knowledge.gpus import GpuFacts, attention_backend_for

PRODUCT_LABEL = "nvidia.com/gpu.product"
MEMORY_LABEL = "nvidia.com/gpu.memory"
COUNT_LABEL = "nvidia.com/gpu.count"
REPLICAS_LABEL = "nvidia.com/gpu.replicas"
MAJOR_LABEL = "nvidia.com/gpu.compute.major"
MINOR_LABEL = "nvidia.com/gpu.compute.minor"
GPU_RESOURCE = "nvidia.com/gpu"
# Node names a source line quotes; the count says how many there are.
NAMED_NODES = 3


@dataclass(frozen=True, slots=True)
class NodeGpus:
    """One node's GPUs as GFD labelled them."""

    node: str
    product: str
    memory_mib: int  # 0 when the label is missing or unreadable (GFD writes 0 for an invalid MIG layout)
    gpus: int  # physical GPUs (or MIG slices) the node offers
    compute_capability: tuple[int, int] | None


def _int(value: object) -> int:
    try:
        return max(int(str(value)), 0)
    except ValueError:
        return 0


def node_gpus(name: str, labels: Mapping[str, str], allocatable: Mapping[str, str]) -> NodeGpus | None:
    """What a node's labels and allocatable say about its GPUs; None for a node without a product label."""
    product = (labels.get(PRODUCT_LABEL) or "").strip()
    if not product:
        return None
    # Time-slicing multiplies the allocatable count by the replicas; a replica is not a GPU of its own.
    replicas = _int(labels.get(REPLICAS_LABEL)) or 1
    gpus = _int(allocatable.get(GPU_RESOURCE)) // replicas or _int(labels.get(COUNT_LABEL))
    major, minor = labels.get(MAJOR_LABEL), labels.get(MINOR_LABEL)
    capability = (_int(major), _int(minor)) if major is not None and minor is not None and _int(major) else None
    return NodeGpus(name, product, _int(labels.get(MEMORY_LABEL)), gpus, capability)


def observed_gpus(nodes: Iterable[NodeGpus]) -> tuple[GpuFacts, ...]:
    """One ``GpuFacts`` per product with a memory label, sorted by product.

    Nodes of one product normally agree; where they do not, the smallest memory is planned (a plan must hold on
    whichever node the pod lands) and the largest GPU count is the node size (tensor parallelism fits there)."""
    by_product: dict[str, list[NodeGpus]] = {}
    for node in nodes:
        if node.memory_mib > 0:
            by_product.setdefault(node.product, []).append(node)
    facts = []
    for product, group in sorted(by_product.items()):
        memory = min(node.memory_mib for node in group)
        capability = next((node.compute_capability for node in group if node.compute_capability), None)
        names = sorted(node.node for node in group)
        shown = ", ".join(names[:NAMED_NODES]) + (", ..." if len(names) > NAMED_NODES else "")
        facts.append(
            GpuFacts(
                product=product,
                memory_mib=memory,
                gpus_per_node=max(max(node.gpus for node in group), 1),
                attention_backend=attention_backend_for(capability),
                sources=(f"{MEMORY_LABEL}={memory} on {len(group)} node(s): {shown}",),
                compute_capability=capability,
                observed_nodes=len(group),
            )
        )
    return tuple(facts)
