"""Capacity: whether the cluster's GPU nodes, as the operator sees them, can hold a deployment as planned (pure).

Inputs: the spec, the GPU memory was planned for, and the GPU nodes the operator watches (knowledge.observed). The
pods' nodeSelector is ``nvidia.com/gpu.product`` plus ``spec.resources.nodeSelector``, matched exactly as the
scheduler matches it; a node counts when the pods tolerate its NoSchedule/NoExecute taints (a cordoned node carries
node.kubernetes.io/unschedulable). Each pod requests TP x PP GPUs on one node, or a multi-node replica's share
(GPUs per node) on each of its nodes, so a node holds ``allocatable // per pod`` pods.

What it counts is *allocatable* nvidia.com/gpu, not free: GPUs other pods already hold would need every pod of the
cluster watched, which the operator does not do. So a False verdict is certain (these nodes cannot hold it even
empty); a True one means they could.

Findings are warnings, never errors: a cluster autoscaler adds nodes once pods wait, and a node may be on its way.
Without a view of the nodes (offline, no right to list them, not listed yet) nothing is said: the verdict is
Unknown, with no finding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from llama_operator.api import LlamaDeploymentSpec
from llama_operator.api.spec import Toleration
from llama_operator.knowledge import Knowledge
from llama_operator.knowledge.gpus import GpuFacts
from llama_operator.knowledge.observed import MEMORY_LABEL, NAMED_NODES, PRODUCT_LABEL, NodeGpus, ObservedNodes, Taint
from llama_operator.planning.findings import Finding
from llama_operator.planning.gpus import FIELD as PRODUCT_FIELD
from llama_operator.planning.gpus import resolve_gpu
from llama_operator.planning.parallelism import TP_FIELD, nodes_per_replica

CONDITION = "Capacity"
NO_NODE = "no_node_with_gpu_product"
NO_MATCH = "no_node_matches_node_selector"
INSUFFICIENT = "insufficient_allocatable_gpus"
MEMORY_MISMATCH = "gpu_memory_label_mismatch"
AUTOSCALING_ABOVE = "autoscaling_max_above_capacity"
AUTOSCALING_MAX_FIELD = "spec.autoscaling.maxReplicas"
# The condition's reason for each finding that makes it False, in the order they are reported.
REASONS: Mapping[str, str] = {
    NO_NODE: "NoNodeWithProduct",
    NO_MATCH: "NoNodeMatchesSelector",
    INSUFFICIENT: "InsufficientAllocatableGPUs",
    MEMORY_MISMATCH: "GPUMemoryMismatch",
}
FITS = "GPUsAllocatable"
NOT_OBSERVED = "NodesNotObserved"
SELECTOR_FIELD = "spec.resources.nodeSelector"
REPLICAS_FIELD = "spec.replicas"
# Memory labels within 1% of the catalog's figure agree (the reserve band absorbs more than that); ECC on a T4 moves
# NVML's total by 1.6%.
MEMORY_TOLERANCE = 0.01
# Products named when none matches.
NAMED_PRODUCTS = 6
# Tolerations every pod gets from the DefaultTolerationSeconds admission plugin (for 300 s).
DEFAULT_TOLERATIONS = (
    Toleration(key="node.kubernetes.io/not-ready", operator="Exists", effect="NoExecute"),
    Toleration(key="node.kubernetes.io/unreachable", operator="Exists", effect="NoExecute"),
)
Status = Literal["True", "False", "Unknown"]


@dataclass(frozen=True, slots=True)
class GpuFit:
    """How many replicas the nodes the pods may use can allocate (autoscaling's cap): ``nodes`` usable matching
    nodes allocate ``allocatable`` GPUs in all, ``per_replica`` per replica (``per_pod`` on each of ``span`` nodes)."""

    replicas: int
    nodes: int
    allocatable: int
    per_replica: int
    per_pod: int
    span: int
    product: str

    def describe(self) -> str:
        """For example: the 1 matching node allocates 8 NVIDIA-H200 GPUs, 4 per replica."""
        nodes = f"the {self.nodes} matching node{'s' if self.nodes != 1 else ''}"
        verb = "allocates" if self.nodes == 1 else "allocate"
        pods = "" if self.span == 1 else f" ({self.span} pods of {self.per_pod}, each on its own node)"
        return f"{nodes} {verb} {self.allocatable} {self.product} GPUs, {self.per_replica} per replica{pods}"


@dataclass(frozen=True, slots=True)
class CapacityVerdict:
    """The ``Capacity`` condition: True (the matching nodes can allocate what the spec needs, with at least the GPU
    memory it was planned for), False (they cannot: the reason says why), Unknown (the nodes are not known).
    ``fit``: the replicas those nodes can allocate at all (None when the nodes are not known)."""

    status: Status
    reason: str
    message: str
    fit: GpuFit | None = None


@dataclass(frozen=True, slots=True)
class CapacityCheck:
    verdict: CapacityVerdict
    findings: tuple[Finding, ...]


def tolerates(tolerations: Sequence[Toleration], taint: Taint) -> bool:
    """Whether a pod with ``tolerations`` tolerates ``taint`` (Kubernetes' ToleratesTaint)."""
    for toleration in (*tolerations, *DEFAULT_TOLERATIONS):
        if toleration.effect and toleration.effect != taint.effect:
            continue
        if not toleration.key:
            if toleration.operator == "Exists":
                return True  # an empty key with Exists tolerates everything
            continue
        if toleration.key != taint.key:
            continue
        if toleration.operator == "Exists" or (toleration.value or "") == taint.value:
            return True
    return False


def _names(nodes: Sequence[NodeGpus]) -> str:
    names = [node.node for node in nodes]
    return ", ".join(names[:NAMED_NODES]) + (", ..." if len(names) > NAMED_NODES else "")


def _selector(spec: LlamaDeploymentSpec) -> dict[str, str]:
    # The rendered pods' product label wins over a nodeSelector entry of the same key (render.deployment).
    return {key: value for key, value in spec.resources.node_selector.items() if key != PRODUCT_LABEL}


def _no_node(product: str, nodes: ObservedNodes) -> Finding:
    products = nodes.products()
    if products:
        shown = ", ".join(
            f"{name} ({count} node{'s' if count > 1 else ''})" for name, count in products[:NAMED_PRODUCTS]
        )
        more = ", ..." if len(products) > NAMED_PRODUCTS else ""
        have = f"; the cluster's GPU nodes carry {shown}{more}"
    else:
        have = f"; no node of the cluster carries {PRODUCT_LABEL}"
    near = [name for name, _ in products if name.lower() == product.lower()]
    meant = f"use {near[0]} (labels match case-sensitively), " if near else "use the product of the nodes you mean "
    return Finding(
        NO_NODE,
        "warning",
        PRODUCT_FIELD,
        f"no node is labelled {PRODUCT_LABEL}={product}: the pods would wait unscheduled until such a node joins{have}",
        f"{meant}(kubectl get nodes -L {PRODUCT_LABEL}), or add nodes with this product (a cluster autoscaler adds "
        "them once pods wait)",
    )


def _no_match(product: str, with_product: Sequence[NodeGpus], selector: Mapping[str, str]) -> Finding:
    wanted = ", ".join(f"{key}={value}" for key, value in sorted(selector.items()))
    return Finding(
        NO_MATCH,
        "warning",
        SELECTOR_FIELD,
        f"{len(with_product)} node(s) carry {product} ({_names(with_product)}) but none also has every label of "
        f"spec.resources.nodeSelector ({wanted}): the pods would wait unscheduled",
        "correct spec.resources.nodeSelector, or label the nodes meant (kubectl label node NAME KEY=VALUE)",
    )


def _memory(gpu: GpuFacts, matching: Sequence[NodeGpus]) -> tuple[Finding, bool] | None:
    """The catalog's memory (what the plan used) against the matching nodes' nvidia.com/gpu.memory label, and
    whether the nodes have less than planned (the plan may not hold there)."""
    if gpu.observed_nodes or gpu.memory_mib <= 0:
        return None  # planned from these labels already
    labelled = [node for node in matching if node.memory_mib > 0]
    if not labelled:
        return None
    smallest = min(node.memory_mib for node in labelled)  # a pod may land on any of them
    if abs(smallest - gpu.memory_mib) <= MEMORY_TOLERANCE * gpu.memory_mib:
        return None
    on = [node for node in labelled if node.memory_mib == smallest]
    said = (
        f"memory is planned with the GPU catalog's {gpu.memory_mib} MiB per {gpu.product}, but the matching nodes' "
        f"{MEMORY_LABEL} label says {smallest} MiB ({len(on)} node(s): {_names(on)})"
    )
    gap = abs(smallest - gpu.memory_mib)
    if smallest < gpu.memory_mib:
        less = Finding(
            MEMORY_MISMATCH,
            "warning",
            PRODUCT_FIELD,
            f"{said}: each GPU has {gap} MiB ({gap / 1024:.1f} GiB) less than planned, so the KV cache and the "
            "maxModelLen the plan allows may not fit",
            "check the nodes (ECC mode, a different board behind the same product name); if the label is right, "
            "leave that much headroom (a lower spec.engine.maxModelLen or gpuMemoryUtilization) and report the "
            "figure for the GPU catalog (knowledge/data/gpus.yaml)",
        )
        return less, True
    more = Finding(
        MEMORY_MISMATCH,
        "warning",
        PRODUCT_FIELD,
        f"{said}: each GPU has {gap} MiB ({gap / 1024:.1f} GiB) more than planned, so the plan is conservative",
        "nothing needs to change; report the figure for the GPU catalog (knowledge/data/gpus.yaml)",
    )
    return more, False


@dataclass(frozen=True, slots=True)
class _Need:
    replicas: int
    per_replica: int  # GPUs
    span: int  # nodes (pods) per replica
    per_pod: int  # GPUs each pod requests, on one node
    shape: str

    @property
    def pods(self) -> int:
        return self.replicas * self.span

    @property
    def total(self) -> int:
        return self.replicas * self.per_replica

    def layout(self) -> str:
        """For example: 2 replica(s) x 16 GPUs (TP 8 x PP 2), 2 pods of 8 GPUs per replica."""
        pods = "one pod" if self.span == 1 else f"{self.span} pods"
        each = f"{pods} of {self.per_pod} GPUs per replica"
        return f"{self.replicas} replica(s) x {self.per_replica} GPUs ({self.shape}), {each}"


def _need(spec: LlamaDeploymentSpec, gpu: GpuFacts | None) -> _Need:
    tp, pp = spec.engine.tensor_parallel_size, spec.engine.pipeline_parallel_size
    _, span = nodes_per_replica(spec, gpu)
    # A multi-node replica's pods each request its share (render.lws); a one-node replica's pod all of it.
    return _Need(spec.replicas, tp * pp, span, max(tp * pp // span, 1), f"TP {tp} x PP {pp}")


def _blocked(node: NodeGpus, tolerations: Sequence[Toleration]) -> Taint | None:
    return next((taint for taint in node.taints if not tolerates(tolerations, taint)), None)


def _insufficient(
    product: str, need: _Need, matching: Sequence[NodeGpus], tolerations: Sequence[Toleration]
) -> Finding | None:
    room = 0
    for node in matching:  # most verdicts are True: stop as soon as the pods fit
        if _blocked(node, tolerations) is None:
            room += node.allocatable // need.per_pod
            if room >= need.pods:
                return None
    usable = [node for node in matching if _blocked(node, tolerations) is None]
    allocatable = sum(node.allocatable for node in usable)
    largest = max((node.allocatable for node in usable), default=0)
    have = (
        f"; the {len(usable)} matching node(s) the pods may use allocate {allocatable} in all, room for {room} pod(s) "
        f"of {need.per_pod}"
    )
    if usable and largest < need.per_pod:
        have += f"; no matching node can allocate {need.per_pod} for one pod (the most any allocates is {largest})"
    blocked = [(node, taint) for node in matching if (taint := _blocked(node, tolerations)) is not None]
    if blocked:
        shown = "; ".join(f"{node.node}: {taint} not tolerated" for node, taint in blocked[:NAMED_NODES])
        more = "; ..." if len(blocked) > NAMED_NODES else ""
        have += f"; {len(blocked)} matching node(s) keep these pods off ({shown}{more})"
    fixes = [f"add {product} nodes (a cluster autoscaler adds them once the pods wait)"]
    if room // need.span >= 1:
        fixes.append(f"lower spec.replicas to {room // need.span}")
    if blocked:
        fixes.append("uncordon the nodes or tolerate their taints in spec.resources.tolerations")
    field = TP_FIELD if usable and largest < need.per_pod else REPLICAS_FIELD
    return Finding(
        INSUFFICIENT,
        "warning",
        field,
        f"{need.layout()}, need {need.total} {product} GPUs, each pod on one node{have}. Counted is allocatable, not "
        "free: GPUs other pods hold leave even less",
        ", or ".join(fixes),
    )


def _fit(product: str, need: _Need, matching: Sequence[NodeGpus], tolerations: Sequence[Toleration]) -> GpuFit:
    usable = [node for node in matching if _blocked(node, tolerations) is None]
    room = sum(node.allocatable // need.per_pod for node in usable)
    allocatable = sum(node.allocatable for node in usable)
    return GpuFit(room // need.span, len(usable), allocatable, need.per_replica, need.per_pod, need.span, product)


def _autoscaling_above(spec: LlamaDeploymentSpec, need: _Need, fit: GpuFit | None) -> Finding | None:
    """spec.autoscaling.maxReplicas beyond the replicas the matching nodes can allocate: autoscaling is capped there
    (a warning: nodes may be added, and the cap follows them)."""
    if spec.autoscaling is None or fit is None or spec.autoscaling.max_replicas <= fit.replicas:
        return None
    asked = spec.autoscaling.max_replicas
    fixes = [f"add {fit.product} nodes"]
    if fit.replicas >= max(spec.autoscaling.min_replicas, 1):
        fixes.append(f"lower spec.autoscaling.maxReplicas to {fit.replicas}")
    return Finding(
        AUTOSCALING_ABOVE,
        "warning",
        AUTOSCALING_MAX_FIELD,
        f"maxReplicas {asked} x {need.per_replica} GPUs ({need.shape}) need {asked * need.per_replica} "
        f"{fit.product} GPUs, but {fit.describe()}: room for {fit.replicas} replica(s). Autoscaling is capped at "
        f"{max(fit.replicas, spec.autoscaling.min_replicas)} until nodes are added (allocatable, not free)",
        ", or ".join(fixes),
    )


def check_capacity(spec: LlamaDeploymentSpec, gpu: GpuFacts | None, nodes: ObservedNodes | None) -> CapacityCheck:
    """The capacity verdict and its findings for ``spec`` planned on ``gpu`` (None: not planned), given the
    cluster's GPU nodes (None: not known, and nothing is said)."""
    if nodes is None:
        message = (
            "the operator has not listed the cluster's GPU nodes (it needs list and watch on nodes): capacity is not "
            "judged"
        )
        return CapacityCheck(CapacityVerdict("Unknown", NOT_OBSERVED, message), ())
    product = spec.resources.gpu_product
    with_product = nodes.with_product(product)
    selector = _selector(spec)
    matching = [node for node in with_product if node.matches(selector)] if selector else list(with_product)
    need = _need(spec, gpu)
    # Only autoscaling needs the count of every node (a pass over the nodes of the product).
    fit = _fit(product, need, matching, spec.resources.tolerations) if spec.autoscaling is not None else None
    failing: list[Finding] = []  # the nodes cannot hold it as planned: the verdict is False
    notes: list[Finding] = []  # warnings that leave it True (more GPU memory than planned)
    if not with_product:
        failing.append(_no_node(product, nodes))
    elif not matching:
        failing.append(_no_match(product, with_product, selector))
    else:
        short = _insufficient(product, need, matching, spec.resources.tolerations) if spec.replicas else None
        failing += [short] if short is not None else []
        memory = _memory(gpu, matching) if gpu is not None else None
        if memory is not None:
            (failing if memory[1] else notes).append(memory[0])
        above = _autoscaling_above(spec, need, fit)
        notes += [above] if above is not None else []
    findings = (*failing, *notes)
    if failing:
        first = failing[0]
        return CapacityCheck(CapacityVerdict("False", REASONS[first.code], first.message, fit), findings)
    if not spec.replicas:
        message = "no replicas requested: nothing to place"
    else:
        # Only the spec's figures: the condition (and its status patch) changes when the verdict does, not with
        # every node the cluster adds.
        message = (
            f"the {product} nodes the pods may use can allocate {need.layout()}, each pod on one node (allocatable, "
            "not free: GPUs other pods hold are not counted)"
        )
    return CapacityCheck(CapacityVerdict("True", FITS, message, fit), findings)


def capacity_of(spec: LlamaDeploymentSpec, knowledge: Knowledge) -> CapacityCheck:
    """``check_capacity`` with the GPU the planner resolves for ``spec`` and the nodes ``knowledge`` holds."""
    if knowledge.nodes is None:
        return check_capacity(spec, None, None)
    gpu, _ = resolve_gpu(spec, knowledge)
    return check_capacity(spec, gpu, knowledge.nodes)
