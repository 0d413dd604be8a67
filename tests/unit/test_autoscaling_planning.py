"""spec.autoscaling's findings (planning.autoscaling, through validate as the webhook and `llama-operator validate`
see them) and the cap at the GPUs the nodes allocate (planning.capacity's fit, planning.autoscaling.limits)."""

from __future__ import annotations

from typing import Any

import pytest

from llama_operator.api import LlamaDeploymentSpec
from llama_operator.api.autoscaling import AutoscalingSpec
from llama_operator.knowledge import load_knowledge
from llama_operator.knowledge.observed import NodeGpus, ObservedNodes, Taint, node_gpus
from llama_operator.planning import validate
from llama_operator.planning.autoscaling import limits
from llama_operator.planning.capacity import GpuFit, capacity_of
from llama_operator.webhook import decide

H200 = "NVIDIA-H200"
H100 = "NVIDIA-H100-80GB-HBM3"
KNOWLEDGE = load_knowledge()


def node(name: str, product: str = H200, allocatable: int = 8, taints: tuple[Taint, ...] = ()) -> NodeGpus:
    memory = "143771" if product == H200 else "81559"
    labels = {"nvidia.com/gpu.product": product, "nvidia.com/gpu.memory": memory, "nvidia.com/gpu.count": "8"}
    found = node_gpus(name, labels, {"nvidia.com/gpu": str(allocatable)}, taints)
    assert found is not None
    return found


def sandbox() -> ObservedNodes:
    """The sandbox's default shape: 2 x 8 H100, 1 x 8 H200."""
    return ObservedNodes.of([node("h100-0", H100), node("h100-1", H100), node("h200-0")])


def document(autoscaling: dict[str, Any] | None, replicas: int = 1, tp: int = 4, product: str = H200) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": {"name": "meta-llama/Llama-3.1-8B-Instruct"},
        "engine": {"vllmVersion": "0.32.0", "maxModelLen": 8192, "tensorParallelSize": tp},
        "resources": {"gpuProduct": product},
        "replicas": replicas,
    }
    if autoscaling is not None:
        spec["autoscaling"] = autoscaling
    return {
        "apiVersion": "llamaops.dev/v1alpha1",
        "kind": "LlamaDeployment",
        "metadata": {"name": "scaled", "namespace": "serving"},
        "spec": spec,
    }


def codes(doc: dict[str, Any], nodes: ObservedNodes | None = None) -> dict[str, str]:
    """The error and warning findings (the plan's infos are always there)."""
    knowledge = KNOWLEDGE.with_nodes(nodes) if nodes is not None else KNOWLEDGE
    return {f.code: f.severity for f in validate(doc, knowledge).findings if f.severity != "info"}


def test_a_plain_autoscaling_spec_has_no_findings() -> None:
    assert codes(document({"maxReplicas": 4})) == {}
    assert validate(document({"maxReplicas": 4})).valid


def test_min_above_max_is_refused() -> None:
    result = validate(document({"minReplicas": 5, "maxReplicas": 3}, replicas=4))
    assert not result.valid
    (finding,) = [f for f in result.findings if f.code == "autoscaling_min_above_max"]
    assert finding.field == "spec.autoscaling.minReplicas"
    assert "5" in finding.message
    assert "3" in finding.message


def test_min_zero_needs_scale_to_zero() -> None:
    assert codes(document({"minReplicas": 0, "maxReplicas": 3}))["scale_to_zero_not_allowed"] == "error"
    allowed = codes(document({"minReplicas": 0, "maxReplicas": 3, "scaleToZero": True}))
    assert "scale_to_zero_not_allowed" not in allowed
    # Nothing in vLLM's signals exists at zero replicas to scale it back up.
    assert allowed["scale_from_zero_needs_external_signal"] == "warning"


def test_replicas_outside_the_range_are_warned_not_refused() -> None:
    found = validate(document({"minReplicas": 2, "maxReplicas": 4}, replicas=1))
    assert found.valid
    (finding,) = [f for f in found.findings if f.code == "replicas_outside_autoscaling_range"]
    assert finding.field == "spec.replicas"
    assert "sets it to 2" in finding.message
    assert "replicas_outside_autoscaling_range" not in codes(document({"minReplicas": 2, "maxReplicas": 4}, 3))


def test_windows_the_hpa_refuses_are_refused() -> None:
    found = codes(document({"maxReplicas": 4, "scaleDownCooldown": "2h"}))
    assert found["autoscaling_window_above_hpa_limit"] == "error"
    assert "autoscaling_window_above_hpa_limit" not in codes(document({"maxReplicas": 4, "scaleDownCooldown": "1h"}))
    assert codes(document({"maxReplicas": 4, "pollingInterval": "0s"}))["autoscaling_polling_interval_zero"] == "error"


def test_a_kv_cache_target_written_as_a_percentage_is_warned() -> None:
    found = codes(document({"maxReplicas": 4, "metric": "KVCacheUsage", "target": 80}))
    assert found["autoscaling_kv_cache_target_above_one"] == "warning"
    assert codes(document({"maxReplicas": 4, "metric": "KVCacheUsage", "target": 0.8})) == {}


@pytest.mark.parametrize(
    "field",
    [{"metric": "QueueLength"}, {"target": 0}, {"window": "2 minutes"}, {"prometheusAddress": "prometheus:9090"}],
)
def test_the_schema_refuses_malformed_fields(field: dict[str, Any]) -> None:
    result = validate(document({"maxReplicas": 4, **field}))
    assert not result.valid


def test_admission_refuses_what_validate_refuses_and_warns_the_rest() -> None:
    refused = decide("CREATE", document({"minReplicas": 5, "maxReplicas": 3}, replicas=4), None, KNOWLEDGE)
    assert not refused.allowed
    assert "autoscaling_min_above_max" in refused.message
    admitted = decide("CREATE", document({"maxReplicas": 6}), None, KNOWLEDGE.with_nodes(sandbox()))
    assert admitted.allowed
    (warning,) = [w for w in admitted.warnings if "autoscaling_max_above_capacity" in w]
    assert warning.startswith("spec.autoscaling.maxReplicas: autoscaling_max_above_capacity: maxReplicas 6 x 4 GPUs")


def test_max_above_what_the_nodes_allocate_is_a_warning_and_the_capacity_stays_true() -> None:
    # The sandbox's one H200 node allocates 8 GPUs: two replicas of TP 4.
    doc = document({"maxReplicas": 6})
    result = validate(doc, KNOWLEDGE.with_nodes(sandbox()))
    assert result.valid
    (finding,) = [f for f in result.findings if f.code == "autoscaling_max_above_capacity"]
    assert finding.severity == "warning"
    assert finding.field == "spec.autoscaling.maxReplicas"
    assert "the 1 matching node allocates 8 NVIDIA-H200 GPUs, 4 per replica" in finding.message
    assert "lower spec.autoscaling.maxReplicas to 2" in finding.fix
    assert result.capacity is not None
    assert result.capacity.status == "True"
    assert result.capacity.fit == GpuFit(2, 1, 8, 4, 4, 1, H200)


def test_no_fit_is_counted_without_autoscaling() -> None:
    spec = LlamaDeploymentSpec.model_validate(document(None)["spec"])
    assert capacity_of(spec, KNOWLEDGE.with_nodes(sandbox())).verdict.fit is None


def test_the_fit_leaves_out_nodes_the_pods_may_not_use() -> None:
    tainted = node("h200-1", taints=(Taint("dedicated", "other", "NoSchedule"),))
    spec = LlamaDeploymentSpec.model_validate(document({"maxReplicas": 6})["spec"])
    nodes = ObservedNodes.of([node("h200-0"), tainted, node("h200-2", allocatable=6)])
    fit = capacity_of(spec, KNOWLEDGE.with_nodes(nodes)).verdict.fit
    assert fit is not None
    assert (fit.replicas, fit.nodes, fit.allocatable) == (3, 2, 14)  # 8 // 4 + 6 // 4


def scaling(**fields: Any) -> AutoscalingSpec:
    return AutoscalingSpec.model_validate({"maxReplicas": 6, **fields})


def fit(replicas: int) -> GpuFit:
    return GpuFit(replicas, 1, replicas * 4, 4, 4, 1, H200)


def test_limits_cap_max_at_the_fit_and_say_so() -> None:
    capped = limits(scaling(), fit(2))
    assert (capped.min_replicas, capped.max_replicas, capped.capped) == (1, 2, True)
    assert (
        capped.message == "maxReplicas 6 capped at 2: the 1 matching node allocates 8 NVIDIA-H200 GPUs, 4 per replica"
    )
    roomy = limits(scaling(), fit(6))
    assert (roomy.max_replicas, roomy.capped, roomy.gpu_limit) == (6, False, 6)


def test_limits_without_a_view_of_the_nodes_are_the_spec_s() -> None:
    unknown = limits(scaling(minReplicas=2), None)
    assert (unknown.min_replicas, unknown.max_replicas, unknown.gpu_limit, unknown.capped) == (2, 6, None, False)
    assert "not capped" in unknown.message


def test_limits_never_go_below_min_nor_below_one() -> None:
    floor = limits(scaling(minReplicas=3), fit(1))
    assert (floor.max_replicas, floor.capped) == (3, True)
    assert "(no fewer than minReplicas)" in floor.message
    none = limits(scaling(minReplicas=0, scaleToZero=True), fit(0))
    assert none.max_replicas == 1  # KEDA's least maxReplicaCount
    assert "(no fewer than one)" in none.message
