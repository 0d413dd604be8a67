"""Which GPU a spec names (planning.gpus): the catalog, GPUs seen on nodes (knowledge.observed, planned from their
nvidia.com/gpu.memory label), GFD's -SHARED and -MIG- suffixes, and GPUs below compute capability 8.0."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from llama_operator.knowledge import Knowledge, load_knowledge
from llama_operator.knowledge.observed import NodeGpus, Taint, node_gpus, observed_gpus
from llama_operator.planning import ValidationResult, validate

KNOWLEDGE = load_knowledge()
L20 = "NVIDIA-L20"  # a real product (48 GB Ada) the catalog does not have
BASE: dict[str, Any] = {
    "apiVersion": "llamaops.dev/v1alpha1",
    "kind": "LlamaDeployment",
    "metadata": {"name": "llama31-8b", "namespace": "serving"},
    "spec": {
        "model": {"name": "meta-llama/Llama-3.1-8B-Instruct"},
        "engine": {"vllmVersion": "0.32.0", "maxModelLen": 8192},
        "resources": {"gpuProduct": "NVIDIA-A10G"},
    },
}


def run(product: str, knowledge: Knowledge = KNOWLEDGE, model: str | None = None, **engine: Any) -> ValidationResult:
    document = copy.deepcopy(BASE)
    document["spec"]["resources"]["gpuProduct"] = product
    if model is not None:
        document["spec"]["model"]["name"] = model
    document["spec"]["engine"].update(engine)
    return validate(document, knowledge)


def codes(result: ValidationResult, severity: str | None = None) -> list[str]:
    return [finding.code for finding in result.findings if severity is None or finding.severity == severity]


def finding(result: ValidationResult, code: str) -> Any:
    return next(item for item in result.findings if item.code == code)


def gfd_labels(
    product: str, memory: str | None, count: str = "8", major: str = "8", minor: str = "9"
) -> dict[str, str]:
    labels = {
        "nvidia.com/gpu.product": product,
        "nvidia.com/gpu.count": count,
        "nvidia.com/gpu.compute.major": major,
        "nvidia.com/gpu.compute.minor": minor,
    }
    if memory is not None:
        labels["nvidia.com/gpu.memory"] = memory
    return labels


def seen(*nodes: NodeGpus) -> Knowledge:
    return KNOWLEDGE.with_observed_gpus(observed_gpus(nodes))


def l20_node(name: str, memory: int = 46068, gpus: int = 8) -> NodeGpus:
    node = node_gpus(name, gfd_labels(L20, str(memory)), {"nvidia.com/gpu": str(gpus)})
    assert node is not None
    return node


def test_a10g_is_planned_from_the_catalog() -> None:
    result = run("NVIDIA-A10G")
    assert "unknown_gpu_product" not in codes(result)
    assert result.plan is not None
    assert result.plan.gpu_memory_gib == pytest.approx(23028 / 1024, abs=0.01)


def test_an_uncatalogued_product_without_nodes_keeps_todays_warning_and_no_plan() -> None:
    result = run(L20)
    assert codes(result, "warning") == ["unknown_gpu_product"]
    assert result.plan is None


def test_an_uncatalogued_product_on_nodes_is_planned_from_their_memory_label() -> None:
    result = run(L20, seen(l20_node("l20-a"), l20_node("l20-b")))
    assert "unknown_gpu_product" not in codes(result)
    found = finding(result, "gpu_product_from_node_label")
    assert found.severity == "warning"
    assert found.field == "spec.resources.gpuProduct"
    assert "46068 MiB on 2 node(s)" in found.message
    assert "8 GPUs per node" in found.message
    assert "compute capability 8.9" in found.message
    assert result.plan is not None
    assert result.plan.gpu_memory_gib == pytest.approx(46068 / 1024, abs=0.01)
    # The plan is the one the catalog would give a board of the same memory and capability (the L40S).
    same = run("NVIDIA-L40S")
    assert same.plan is not None
    assert result.plan.kv_cache_tokens == same.plan.kv_cache_tokens


def test_nodes_of_other_products_do_not_plan_this_one() -> None:
    other = node_gpus("x", gfd_labels("NVIDIA-L2", "23034"), {"nvidia.com/gpu": "1"})
    assert other is not None
    assert "unknown_gpu_product" in codes(run(L20, seen(other)))


def test_the_catalog_wins_over_a_node_label_for_a_product_it_has() -> None:
    odd = node_gpus("h100-odd", gfd_labels("NVIDIA-H100-80GB-HBM3", "1000", major="9", minor="0"), {})
    assert odd is not None
    knowledge = seen(odd)
    assert knowledge.gpu("NVIDIA-H100-80GB-HBM3") is KNOWLEDGE.gpu("NVIDIA-H100-80GB-HBM3")
    assert knowledge.gpus == KNOWLEDGE.gpus
    assert "gpu_product_from_node_label" not in codes(run("NVIDIA-H100-80GB-HBM3", knowledge))


def test_node_size_from_the_nodes_refuses_tensor_parallelism_wider_than_any_node() -> None:
    knowledge = seen(l20_node("l20-a", gpus=2), l20_node("l20-b", gpus=4))
    assert knowledge.gpu(L20).gpus_per_node == 4  # type: ignore[union-attr]
    assert "tp_exceeds_gpus_per_node" in codes(run(L20, knowledge, tensorParallelSize=8), "error")
    assert "tp_exceeds_gpus_per_node" not in codes(run(L20, knowledge, tensorParallelSize=4))


def test_a_time_sliced_label_uses_the_boards_facts_and_warns() -> None:
    result = run("NVIDIA-A10G-SHARED")
    assert "unknown_gpu_product" not in codes(result)
    shared = finding(result, "gpu_time_sliced")
    assert shared.severity == "warning"
    assert "gpuMemoryUtilization" in shared.fix
    assert result.plan is not None
    assert result.plan.gpu_memory_gib == pytest.approx(23028 / 1024, abs=0.01)


def test_a_time_sliced_uncatalogued_product_is_planned_from_its_nodes() -> None:
    node = node_gpus("l20-ts", gfd_labels(f"{L20}-SHARED", "46068"), {"nvidia.com/gpu": "32"})
    assert node is not None
    result = run(f"{L20}-SHARED", seen(node))
    assert {"gpu_product_from_node_label", "gpu_time_sliced"} <= set(codes(result, "warning"))
    assert result.plan is not None


MIG = "NVIDIA-A100-80GB-PCIe-MIG-1g.10gb"


def test_a_mig_slice_without_nodes_is_not_planned() -> None:
    result = run(MIG)
    found = finding(result, "mig_memory_not_planned")
    assert "1g.10gb" in found.message
    assert "NVIDIA-A100-80GB-PCIe" in found.message
    assert "unknown_gpu_product" not in codes(result)
    assert result.plan is None


def test_a_mig_slice_on_nodes_is_planned_from_the_slices_memory() -> None:
    node = node_gpus("a100-mig", gfd_labels(MIG, "9728", count="28", major="8", minor="0"), {"nvidia.com/gpu": "28"})
    assert node is not None
    knowledge = seen(node)
    result = run(MIG, knowledge, model="meta-llama/Llama-3.2-1B", maxModelLen=4096)
    assert "gpu_product_from_node_label" in codes(result)
    assert "mig_slices_per_pod" not in codes(result)
    assert result.plan is not None
    assert result.plan.gpu_memory_gib == pytest.approx(9728 / 1024, abs=0.01)
    wide = run(MIG, knowledge, tensorParallelSize=2)
    assert finding(wide, "mig_slices_per_pod").severity == "warning"


def test_t4_warns_about_compute_capability_75() -> None:
    result = run("Tesla-T4", model="meta-llama/Llama-3.2-1B", maxModelLen=4096)
    found = finding(result, "gpu_compute_capability_below_8_0")
    assert found.severity == "warning"
    assert "7.5" in found.message
    assert "float16" in found.message
    assert result.plan is not None


def test_bfloat16_asked_for_on_a_t4_is_refused() -> None:
    result = run("Tesla-T4", extraArgs=["--dtype", "bfloat16"])
    error = finding(result, "bfloat16_unsupported_on_gpu")
    assert error.severity == "error"
    assert error.field == "spec.engine.extraArgs"
    assert not result.valid
    assert "bfloat16_unsupported_on_gpu" not in codes(run("Tesla-T4", extraArgs=["--dtype=half"]))
    assert "bfloat16_unsupported_on_gpu" not in codes(run("NVIDIA-A10G", extraArgs=["--dtype", "bfloat16"]))


def test_observed_gpus_aggregate_nodes_of_a_product() -> None:
    nodes = [
        l20_node("l20-b", memory=46068, gpus=4),
        l20_node("l20-a", memory=45000, gpus=8),
        # No memory label (GFD not done yet): no plan from this node.
        NodeGpus("l20-c", L20, 0, 8, (8, 9)),
        NodeGpus("b2", "NVIDIA-B2-Imaginary", 180000, 8, (10, 0)),
        NodeGpus("t", "Tesla-P4", 7611, 1, (6, 1)),
    ]
    facts = {gpu.product: gpu for gpu in observed_gpus(nodes)}
    assert list(facts) == sorted(facts)
    l20 = facts[L20]
    assert (l20.memory_mib, l20.gpus_per_node, l20.observed_nodes) == (45000, 8, 2)
    assert l20.sources == ("nvidia.com/gpu.memory=45000 on 2 node(s): l20-a, l20-b",)
    assert l20.attention_backend == "FLASH_ATTN"
    assert facts["NVIDIA-B2-Imaginary"].attention_backend == "FLASHINFER"
    assert facts["Tesla-P4"].attention_backend == "TRITON_ATTN"


def gpus_of(node: NodeGpus | None) -> tuple[object, ...]:
    assert node is not None
    return (node.node, node.product, node.memory_mib, node.gpus, node.compute_capability, node.allocatable)


def test_a_node_s_labels_and_allocatable() -> None:
    assert node_gpus("cpu", {"kubernetes.io/os": "linux"}, {"cpu": "8"}) is None
    plain = node_gpus("n", gfd_labels("NVIDIA-L20", "46068", count="8"), {"nvidia.com/gpu": "6"})
    assert gpus_of(plain) == ("n", "NVIDIA-L20", 46068, 6, (8, 9), 6)
    # Time-slicing: allocatable counts replicas, not GPUs; pods request replicas, so that is what they can allocate.
    sliced = {**gfd_labels("NVIDIA-L20-SHARED", "46068", count="8"), "nvidia.com/gpu.replicas": "4"}
    assert gpus_of(node_gpus("s", sliced, {"nvidia.com/gpu": "32"})) == ("s", "NVIDIA-L20-SHARED", 46068, 8, (8, 9), 32)
    # Nothing allocatable yet (device plugin starting): GFD's count; unreadable labels count as absent.
    starting = {**gfd_labels("NVIDIA-L20", "lots", count="8"), "nvidia.com/gpu.compute.major": "x"}
    assert gpus_of(node_gpus("t", starting, {})) == ("t", "NVIDIA-L20", 0, 8, None, 0)


def test_a_node_s_labels_taints_and_cordon_as_a_pod_meets_them() -> None:
    labels = {**gfd_labels("NVIDIA-L20", "46068"), "pool": "a", "nvidia.com/gfd.timestamp": "1764770000"}
    taints = [Taint("nvidia.com/gpu", "present", "NoSchedule"), Taint("spot", "", "PreferNoSchedule")]
    node = node_gpus("n", labels, {"nvidia.com/gpu": "8"}, taints, unschedulable=True)
    assert node is not None
    assert node.matches({"pool": "a", "nvidia.com/gpu.product": "NVIDIA-L20"})
    assert not node.matches({"pool": "b"})
    # PreferNoSchedule only steers the scheduler; a cordon is the taint the lifecycle controller adds for it.
    assert [str(taint) for taint in node.taints] == [
        "node.kubernetes.io/unschedulable:NoSchedule",
        "nvidia.com/gpu=present:NoSchedule",
    ]
    # GFD's timestamp changes every minute and nothing else with it: the node is the same.
    later = node_gpus("n", {**labels, "nvidia.com/gfd.timestamp": "1764770060"}, {"nvidia.com/gpu": "8"}, taints, True)
    assert later == node


def test_no_observed_gpus_leaves_the_knowledge_as_it_is() -> None:
    assert KNOWLEDGE.with_observed_gpus(()) is KNOWLEDGE
    assert seen(l20_node("a")).gpus == KNOWLEDGE.gpus
