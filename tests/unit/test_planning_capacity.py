"""The capacity check (planning.capacity): the cluster's GPU nodes against what a spec needs, as warnings and the
Capacity verdict, never an error."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llama_operator.api import LlamaDeploymentSpec
from llama_operator.api.spec import Toleration
from llama_operator.knowledge import load_knowledge
from llama_operator.knowledge.observed import NodeGpus, ObservedNodes, Taint, node_gpus, observed_gpus
from llama_operator.planning import validate
from llama_operator.planning.capacity import capacity_of, check_capacity, tolerates
from llama_operator.webhook import decide

H100 = "NVIDIA-H100-80GB-HBM3"
H200 = "NVIDIA-H200"
KNOWLEDGE = load_knowledge()


def node(
    name: str,
    product: str = H100,
    allocatable: int = 8,
    memory: int = 81559,
    labels: dict[str, str] | None = None,
    taints: tuple[Taint, ...] = (),
    unschedulable: bool = False,
) -> NodeGpus:
    gfd = {"nvidia.com/gpu.product": product, "nvidia.com/gpu.memory": str(memory), "nvidia.com/gpu.count": "8"}
    found = node_gpus(name, {**gfd, **(labels or {})}, {"nvidia.com/gpu": str(allocatable)}, taints, unschedulable)
    assert found is not None
    return found


def sandbox() -> ObservedNodes:
    """The sandbox's default shape: 2 x 8 H100, 1 x 8 H200."""
    return ObservedNodes.of([node("h100-0"), node("h100-1"), node("h200-0", H200, memory=143771)])


def document(product: str = H100, tp: int = 8, pp: int = 1, replicas: int = 1, **resources: Any) -> dict[str, Any]:
    return {
        "apiVersion": "llamaops.dev/v1alpha1",
        "kind": "LlamaDeployment",
        "metadata": {"name": "capacity", "namespace": "serving"},
        "spec": {
            "model": {"name": "meta-llama/Llama-3.1-8B-Instruct"},
            "engine": {
                "vllmVersion": "0.32.0",
                "maxModelLen": 8192,
                "tensorParallelSize": tp,
                "pipelineParallelSize": pp,
            },
            "resources": {"gpuProduct": product, **resources},
            "replicas": replicas,
        },
    }


def spec(**kw: Any) -> LlamaDeploymentSpec:
    return LlamaDeploymentSpec.model_validate(document(**kw)["spec"])


def judged(nodes: ObservedNodes | None, **kw: Any) -> tuple[tuple[str, str], list[str], list[str]]:
    """(status, reason), the finding codes, their messages."""
    check = capacity_of(spec(**kw), KNOWLEDGE.with_nodes(nodes) if nodes is not None else KNOWLEDGE)
    assert all(f.severity == "warning" for f in check.findings)
    return (
        (check.verdict.status, check.verdict.reason),
        [f.code for f in check.findings],
        [f.message for f in check.findings],
    )


def test_without_a_view_of_the_nodes_nothing_is_said() -> None:
    # Offline, no right to list nodes, or not listed yet: an empty view is no evidence.
    verdict, codes, _ = judged(None, product="NVIDIA-NOT-A-GPU")
    assert verdict == ("Unknown", "NodesNotObserved")
    assert codes == []


def test_a_product_no_node_carries_names_the_products_the_cluster_has() -> None:
    verdict, codes, (message,) = judged(sandbox(), product="NVIDIA-NOT-A-GPU")
    assert verdict == ("False", "NoNodeWithProduct")
    assert codes == ["no_node_with_gpu_product"]
    assert "no node is labelled nvidia.com/gpu.product=NVIDIA-NOT-A-GPU" in message
    assert f"{H100} (2 nodes), {H200} (1 node)" in message
    # A cluster listed with no GPU node at all says so.
    _, _, (empty,) = judged(ObservedNodes.of([]), product=H100)
    assert "no node of the cluster carries nvidia.com/gpu.product" in empty


def test_a_product_spelled_in_another_case_is_named_in_the_fix() -> None:
    check = capacity_of(spec(product="nvidia-h200"), KNOWLEDGE.with_nodes(sandbox()))
    (finding,) = check.findings
    assert finding.fix.startswith("use NVIDIA-H200 (labels match case-sensitively)")


def test_the_node_selector_must_match_too() -> None:
    pool = ObservedNodes.of([node("a", labels={"pool": "a"}), node("b", labels={"pool": "b"})])
    verdict, codes, (message,) = judged(pool, nodeSelector={"pool": "c"})
    assert verdict == ("False", "NoNodeMatchesSelector")
    assert codes == ["no_node_matches_node_selector"]
    assert "2 node(s) carry NVIDIA-H100-80GB-HBM3 (a, b) but none also has every label" in message
    assert "(pool=c)" in message
    assert judged(pool, nodeSelector={"pool": "b"})[0] == ("True", "GPUsAllocatable")
    # The rendered pods' product label wins over a nodeSelector entry of the same key.
    assert judged(pool, nodeSelector={"nvidia.com/gpu.product": "other"})[0] == ("True", "GPUsAllocatable")


def test_more_gpus_than_the_matching_nodes_allocate() -> None:
    # The example: two 8-GPU replicas on a cluster with one 8-GPU H200 node.
    verdict, codes, (message,) = judged(sandbox(), product=H200, replicas=2)
    assert verdict == ("False", "InsufficientAllocatableGPUs")
    assert codes == ["insufficient_allocatable_gpus"]
    assert "2 replica(s) x 8 GPUs (TP 8 x PP 1), one pod of 8 GPUs per replica, need 16 NVIDIA-H200 GPUs" in message
    assert "allocate 8 in all, room for 1 pod(s) of 8" in message
    assert "allocatable, not free" in message
    check = capacity_of(spec(product=H200, replicas=2), KNOWLEDGE.with_nodes(sandbox()))
    assert check.findings[0].field == "spec.replicas"
    assert "lower spec.replicas to 1" in check.findings[0].fix
    assert judged(sandbox(), product=H200, replicas=1)[0] == ("True", "GPUsAllocatable")


def test_gpus_are_counted_per_node_not_summed() -> None:
    # 2 x 4 allocatable GPUs are 8, but a TP 8 pod needs all 8 on one node.
    half = ObservedNodes.of([node("a", allocatable=4), node("b", allocatable=4)])
    check = capacity_of(spec(tp=8), KNOWLEDGE.with_nodes(half))
    (finding,) = check.findings
    assert "allocate 8 in all, room for 0 pod(s) of 8" in finding.message
    assert "no matching node can allocate 8 for one pod (the most any allocates is 4)" in finding.message
    assert finding.field == "spec.engine.tensorParallelSize"
    # Three TP 2 pods fit on a node allocating 6 (and 7): 6 replicas on two.
    odd = ObservedNodes.of([node("a", allocatable=6), node("b", allocatable=7)])
    assert judged(odd, tp=2, replicas=6)[0] == ("True", "GPUsAllocatable")
    assert judged(odd, tp=2, replicas=7)[0] == ("False", "InsufficientAllocatableGPUs")


def test_a_multi_node_replica_needs_its_share_on_each_node() -> None:
    # TP 8 x PP 2 on 8-GPU nodes: a LeaderWorkerSet group of two pods of 8 GPUs.
    verdict, codes, _ = judged(sandbox(), tp=8, pp=2)
    assert (verdict, codes) == (("True", "GPUsAllocatable"), [])
    verdict, codes, (message,) = judged(sandbox(), tp=8, pp=2, replicas=2)
    assert verdict == ("False", "InsufficientAllocatableGPUs")
    assert "2 replica(s) x 16 GPUs (TP 8 x PP 2), 2 pods of 8 GPUs per replica, need 32" in message
    assert "room for 2 pod(s) of 8" in message
    check = capacity_of(spec(tp=8, pp=2, replicas=2), KNOWLEDGE.with_nodes(sandbox()))
    assert "lower spec.replicas to 1" in check.findings[0].fix


def test_cordoned_and_tainted_nodes_hold_no_pods_unless_tolerated() -> None:
    gpu_taint = Taint("nvidia.com/gpu", "present", "NoSchedule")
    nodes = ObservedNodes.of([node("a", unschedulable=True), node("b", taints=(gpu_taint,))])
    verdict, _, (message,) = judged(nodes)
    assert verdict == ("False", "InsufficientAllocatableGPUs")
    assert "the 0 matching node(s) the pods may use allocate 0 in all" in message
    assert "a: node.kubernetes.io/unschedulable:NoSchedule not tolerated" in message
    assert "b: nvidia.com/gpu=present:NoSchedule not tolerated" in message
    tolerated = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert judged(nodes, tolerations=tolerated)[0] == ("True", "GPUsAllocatable")
    # PreferNoSchedule only steers the scheduler.
    prefer = ObservedNodes.of([node("c", taints=(Taint("x", "", "PreferNoSchedule"),))])
    assert judged(prefer)[0] == ("True", "GPUsAllocatable")


@pytest.mark.parametrize(
    ("toleration", "taint", "expected"),
    [
        ({"operator": "Exists"}, Taint("any", "v", "NoExecute"), True),
        ({"key": "k", "value": "v"}, Taint("k", "v", "NoSchedule"), True),
        ({"key": "k", "value": "w"}, Taint("k", "v", "NoSchedule"), False),
        ({"key": "k", "operator": "Exists", "effect": "NoExecute"}, Taint("k", "v", "NoSchedule"), False),
        ({"key": "other", "operator": "Exists"}, Taint("k", "", "NoSchedule"), False),
        # Every pod gets these from the DefaultTolerationSeconds admission plugin.
        ({"key": "other", "operator": "Exists"}, Taint("node.kubernetes.io/not-ready", "", "NoExecute"), True),
        ({"key": "other", "operator": "Exists"}, Taint("node.kubernetes.io/not-ready", "", "NoSchedule"), False),
    ],
)
def test_tolerations_match_as_kubernetes_matches_them(toleration: dict[str, str], taint: Taint, expected: bool) -> None:
    assert tolerates([Toleration.model_validate(toleration)], taint) is expected


def test_catalog_memory_against_the_nodes_label() -> None:
    # The plan used the catalog's 81,559 MiB; the nodes say 40,960 (a different board behind the label).
    smaller = ObservedNodes.of([node("a", memory=40960), node("b", memory=81559)])
    verdict, codes, (message,) = judged(smaller)
    assert verdict == ("False", "GPUMemoryMismatch")
    assert codes == ["gpu_memory_label_mismatch"]
    assert "the GPU catalog's 81559 MiB per NVIDIA-H100-80GB-HBM3" in message
    assert "nvidia.com/gpu.memory label says 40960 MiB (1 node(s): a)" in message
    assert "less than planned" in message
    # More memory than planned: a warning, but the plan holds there.
    verdict, codes, (message,) = judged(ObservedNodes.of([node("a", memory=95830)]))
    assert (verdict, codes) == (("True", "GPUsAllocatable"), ["gpu_memory_label_mismatch"])
    assert "more than planned, so the plan is conservative" in message
    # Within 1% agrees (the reserve band absorbs it); no label says nothing.
    assert judged(ObservedNodes.of([node("a", memory=81000)]))[1] == []
    assert judged(ObservedNodes.of([node("a", memory=0)]))[1] == []


def test_a_product_planned_from_its_nodes_label_has_no_mismatch() -> None:
    observed = [node("l20-0", "NVIDIA-L20", memory=46068), node("l20-1", "NVIDIA-L20", memory=45000)]
    knowledge = KNOWLEDGE.with_observed_gpus(observed_gpus(observed)).with_nodes(ObservedNodes.of(observed))
    check = capacity_of(spec(product="NVIDIA-L20", tp=1), knowledge)
    assert (check.verdict.status, check.findings) == ("True", ())


def test_no_replicas_need_no_gpus_but_still_a_product() -> None:
    assert judged(sandbox(), product=H200, replicas=0)[:2] == (("True", "GPUsAllocatable"), [])
    assert judged(sandbox(), product="NVIDIA-NOT-A-GPU", replicas=0)[0] == ("False", "NoNodeWithProduct")


def test_a_true_verdict_does_not_move_with_the_node_count() -> None:
    # The condition is rewritten only when the verdict changes, not with each node the cluster adds.
    few = capacity_of(spec(), KNOWLEDGE.with_nodes(sandbox())).verdict
    more = capacity_of(spec(), KNOWLEDGE.with_nodes(ObservedNodes.of([node(f"n{i}") for i in range(9)]))).verdict
    assert few == more
    assert "allocatable, not free" in few.message


def test_validate_warns_and_never_refuses() -> None:
    knowledge = KNOWLEDGE.with_nodes(sandbox())
    result = validate(document(product="NVIDIA-NOT-A-GPU"), knowledge)
    assert result.valid
    codes = [f.code for f in result.findings if f.severity == "warning"]
    assert codes == ["unknown_gpu_product", "no_node_with_gpu_product"]
    assert result.capacity is not None
    assert result.capacity.reason == "NoNodeWithProduct"
    # Offline (no nodes): the same spec has no capacity finding.
    assert "no_node_with_gpu_product" not in [f.code for f in validate(document(product="NVIDIA-NOT-A-GPU")).findings]
    # An invalid spec is not judged: nothing of it deploys.
    invalid = validate(document(tp=5), knowledge)
    assert not invalid.valid
    assert invalid.capacity is None


def test_admission_passes_capacity_findings_on_as_warnings() -> None:
    decision = decide("CREATE", document(product=H200, replicas=2), None, KNOWLEDGE.with_nodes(sandbox()))
    assert decision.allowed
    (warning,) = [w for w in decision.warnings if "insufficient_allocatable_gpus" in w]
    assert warning.startswith("spec.replicas: insufficient_allocatable_gpus: 2 replica(s) x 8 GPUs")
    assert "Fix: add NVIDIA-H200 nodes" in warning


def test_check_capacity_takes_the_planned_gpu() -> None:
    # Without a planned GPU (a product the catalog lacks and no node shows) only placement is judged.
    check = check_capacity(spec(product="NVIDIA-NOT-A-GPU"), None, ObservedNodes.of([]))
    assert [f.code for f in check.findings] == ["no_node_with_gpu_product"]


NODES = ObservedNodes.of(
    [
        node("h100-0"),
        node("h100-1", allocatable=0),  # device plugin not reporting
        node("h100-2", allocatable=16, labels={"pool": "a"}, taints=(Taint("gpu", "", "NoExecute"),)),
        node("h200-0", H200, memory=0, unschedulable=True),
        node("l20-0", "NVIDIA-L20", allocatable=3, memory=46068),
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    product=st.sampled_from([H100, H200, "NVIDIA-L20", "nvidia-h100-80gb-hbm3", "NVIDIA-NOT-A-GPU", "x-MIG-1g.10gb"]),
    tp=st.integers(min_value=1, max_value=64),
    pp=st.integers(min_value=1, max_value=8),
    replicas=st.integers(min_value=0, max_value=10000),
    per_node=st.none() | st.integers(min_value=1, max_value=64),
    selector=st.dictionaries(st.sampled_from(["pool", "nvidia.com/gpu.product", "zone"]), st.sampled_from(["a", "b"])),
    tolerations=st.lists(
        st.fixed_dictionaries(
            {"operator": st.just("Exists")},
            optional={
                "key": st.sampled_from(["gpu", "node.kubernetes.io/unschedulable"]),
                "effect": st.just("NoExecute"),
            },
        ),
        max_size=2,
    ),
)
def test_any_spec_against_any_nodes_is_judged_and_never_refused(
    product: str,
    tp: int,
    pp: int,
    replicas: int,
    per_node: int | None,
    selector: dict[str, str],
    tolerations: list[dict[str, str]],
) -> None:
    resources: dict[str, Any] = {"nodeSelector": selector, "tolerations": tolerations}
    if per_node is not None:
        resources["gpusPerNode"] = per_node
    document_ = document(product=product, tp=tp, pp=pp, replicas=replicas, **resources)
    result = validate(
        document_, KNOWLEDGE.with_observed_gpus(observed_gpus(NODES.by_product["NVIDIA-L20"])).with_nodes(NODES)
    )
    assert all(f.code != "internal_error" for f in result.findings), result.findings
    capacity_codes = {"no_node_with_gpu_product", "no_node_matches_node_selector", "insufficient_allocatable_gpus"}
    assert all(
        f.severity == "warning" for f in result.findings if f.code in capacity_codes | {"gpu_memory_label_mismatch"}
    )
    if result.valid:
        assert result.capacity is not None
        found = {f.code for f in result.findings}
        less = any(f.code == "gpu_memory_label_mismatch" and "less than planned" in f.message for f in result.findings)
        assert result.capacity.status == ("False" if found & capacity_codes or less else "True")
    else:
        assert result.capacity is None
