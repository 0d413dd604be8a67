"""GPUs seen on the cluster's nodes, from the labels GPU feature discovery (GFD) writes (pure).

For a product the catalog lacks, the node's ``nvidia.com/gpu.memory`` is what the catalog would hold: GFD copies
NVML's total memory in MiB, the figure nvidia-smi prints (k8s-device-plugin internal/lm/resource.go). The operator's
edge (handlers.nodes) keeps the nodes' labels; ``observed_gpus`` turns them into ``GpuFacts`` the planner can use,
and ``ObservedNodes`` indexes them by product for the capacity check (planning.capacity): what each node can
allocate, its labels (for spec.resources.nodeSelector) and the taints that keep pods off it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

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
# The taint the node lifecycle controller puts on a cordoned node (spec.unschedulable); the scheduler's
# NodeUnschedulable plugin lets through only pods that tolerate it.
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"
# Effects that keep a new pod off a node (PreferNoSchedule only steers the scheduler).
REPELLING_EFFECTS = ("NoSchedule", "NoExecute")
# Labels that change without anything changing: GFD rewrites its timestamp on every pass (60 s by default) unless
# run with --no-timestamp. Kept, each would move the view, and re-judge every object, once a minute per node.
VOLATILE_LABELS = frozenset({"nvidia.com/gfd.timestamp"})


@dataclass(frozen=True, slots=True)
class Taint:
    """A node taint that keeps pods off the node unless they tolerate it (NoSchedule or NoExecute)."""

    key: str
    value: str
    effect: str

    def __str__(self) -> str:
        return f"{self.key}={self.value}:{self.effect}" if self.value else f"{self.key}:{self.effect}"


@dataclass(frozen=True, slots=True)
class NodeGpus:
    """One node's GPUs as GFD labelled them."""

    node: str
    product: str
    memory_mib: int  # 0 when the label is missing or unreadable (GFD writes 0 for an invalid MIG layout)
    gpus: int  # physical GPUs (or MIG slices) the node offers
    compute_capability: tuple[int, int] | None
    # The node's allocatable nvidia.com/gpu as the device plugin reports it: what pods can request (time-slicing
    # counts each replica). 0 while no device plugin reports it.
    allocatable: int = 0
    # (key, value) pairs: a set, so matching a nodeSelector costs one lookup per key (a check runs for every object
    # against every node of its product whenever the view changes).
    labels: frozenset[tuple[str, str]] = field(default=frozenset(), repr=False)
    taints: tuple[Taint, ...] = ()  # NoSchedule/NoExecute taints; a cordoned node has UNSCHEDULABLE_TAINT

    def matches(self, selector: Mapping[str, str]) -> bool:
        """Whether a pod's nodeSelector (every key=value) selects this node."""
        return all(pair in self.labels for pair in selector.items())


def _int(value: object) -> int:
    try:
        return max(int(str(value)), 0)
    except ValueError:
        return 0


def _repelling(taints: Iterable[Taint], unschedulable: bool) -> tuple[Taint, ...]:
    kept = {taint for taint in taints if taint.effect in REPELLING_EFFECTS}
    if unschedulable:
        # The lifecycle controller adds this taint to a cordoned node; the scheduler acts on the field either way.
        kept.add(Taint(UNSCHEDULABLE_TAINT, "", "NoSchedule"))
    return tuple(sorted(kept, key=lambda taint: (taint.key, taint.effect, taint.value)))


def node_gpus(
    name: str,
    labels: Mapping[str, str],
    allocatable: Mapping[str, str],
    taints: Iterable[Taint] = (),
    unschedulable: bool = False,
) -> NodeGpus | None:
    """What a node's labels, allocatable, taints and cordon say about its GPUs; None for a node without a product
    label."""
    product = (labels.get(PRODUCT_LABEL) or "").strip()
    if not product:
        return None
    # Time-slicing multiplies the allocatable count by the replicas; a replica is not a GPU of its own.
    replicas = _int(labels.get(REPLICAS_LABEL)) or 1
    requestable = _int(allocatable.get(GPU_RESOURCE))
    gpus = requestable // replicas or _int(labels.get(COUNT_LABEL))
    major, minor = labels.get(MAJOR_LABEL), labels.get(MINOR_LABEL)
    capability = (_int(major), _int(minor)) if major is not None and minor is not None and _int(major) else None
    return NodeGpus(
        name,
        product,
        _int(labels.get(MEMORY_LABEL)),
        gpus,
        capability,
        allocatable=requestable,
        labels=frozenset((str(key), str(value)) for key, value in labels.items() if key not in VOLATILE_LABELS),
        taints=_repelling(taints, unschedulable),
    )


@dataclass(frozen=True, slots=True)
class ObservedNodes:
    """The cluster's GPU nodes as last listed and watched, by ``nvidia.com/gpu.product`` (exact, as the scheduler
    matches a nodeSelector). Present only once the operator has listed nodes: absent, nothing is known."""

    by_product: Mapping[str, tuple[NodeGpus, ...]]

    @classmethod
    def of(cls, nodes: Iterable[NodeGpus]) -> ObservedNodes:
        grouped: dict[str, list[NodeGpus]] = {}
        for node in nodes:
            grouped.setdefault(node.product, []).append(node)
        return cls({product: tuple(sorted(group, key=lambda n: n.node)) for product, group in grouped.items()})

    def with_product(self, product: str) -> tuple[NodeGpus, ...]:
        return self.by_product.get(product, ())

    def products(self) -> list[tuple[str, int]]:
        """(product, nodes) of every product seen, most nodes first."""
        return sorted(((p, len(group)) for p, group in self.by_product.items()), key=lambda item: (-item[1], item[0]))


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
