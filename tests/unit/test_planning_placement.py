"""Placement findings for replicas that span nodes: what a LeaderWorkerSet can place, and what would fit."""

from __future__ import annotations

import copy
from typing import Any

from llama_operator.planning import ValidationResult, validate

MAVERICK: dict[str, Any] = {
    "apiVersion": "llamaops.dev/v1alpha1",
    "kind": "LlamaDeployment",
    "metadata": {"name": "maverick", "namespace": "serving"},
    "spec": {
        "model": {"name": "meta-llama/Llama-4-Maverick-17B-128E-Instruct"},
        "engine": {"vllmVersion": "0.32.0", "tensorParallelSize": 8, "pipelineParallelSize": 2, "maxModelLen": 65536},
        "resources": {"gpuProduct": "NVIDIA-H100-80GB-HBM3"},
    },
}


def run(engine: dict[str, Any] | None = None, resources: dict[str, Any] | None = None, **spec: Any) -> ValidationResult:
    document = copy.deepcopy(MAVERICK)
    document["spec"]["engine"].update(engine or {})
    document["spec"]["resources"].update(resources or {})
    document["spec"].update(spec)
    return validate(document)


def only(result: ValidationResult, code: str) -> Any:
    (found,) = [f for f in result.findings if f.code == code]
    return found


def test_maverick_bf16_spans_two_h100_nodes():
    result = run(resources={"nodeCount": 2})
    assert result.valid, result.errors
    note = only(result, "multi_node_replica")
    assert note.severity == "info"
    assert "2 nodes (16 GPUs, 8 per node)" in note.message
    assert result.effective is not None
    assert result.effective.nodes_per_replica == 2
    assert result.effective.gpus_per_replica == 16


def test_a_replica_needing_three_nodes_on_two_is_refused_with_what_fits():
    result = run(engine={"pipelineParallelSize": 3}, resources={"nodeCount": 2})
    assert not result.valid
    error = only(result, "not_enough_nodes")
    assert error.severity == "error"
    assert error.field == "spec.engine.pipelineParallelSize"
    assert "need 3 nodes of NVIDIA-H100-80GB-HBM3" in error.message
    assert "nodeCount is 2" in error.message
    assert "TP 8 x PP 2 (16 GPUs, 2 nodes)" in error.fix


def test_replicas_that_do_not_fit_name_how_many_do():
    result = run(resources={"nodeCount": 5}, replicas=3)
    error = only(result, "not_enough_nodes")
    assert error.field == "spec.replicas"
    assert "3 replica(s) x 2 node(s)" in error.message
    assert error.fix.startswith("use at most 2 replicas")


def test_uneven_gpus_per_node_is_refused_with_the_nearest_even_shapes():
    # TP 4 x PP 3 = 12 GPUs: one and a half 8-GPU nodes.
    result = run(engine={"tensorParallelSize": 4, "pipelineParallelSize": 3})
    error = only(result, "uneven_multi_node_split")
    assert error.severity == "error"
    assert "12 GPUs (TP 4 x PP 3)" in error.message
    assert "TP 4 x PP 2 (8 GPUs, one node)" in error.fix
    assert "TP 4 x PP 4 (16 GPUs, 2 nodes)" in error.fix


def test_tensor_parallel_groups_that_straddle_nodes_are_a_warning():
    # 6-GPU nodes, TP 4 x PP 3 = 12 GPUs = two whole nodes, but 4 does not divide 6.
    result = run(engine={"tensorParallelSize": 4, "pipelineParallelSize": 3}, resources={"gpusPerNode": 6})
    warning = only(result, "tp_group_spans_nodes")
    assert warning.severity == "warning"
    assert "uneven_multi_node_split" not in {f.code for f in result.findings}


def test_launch_flags_in_extra_args_are_refused_only_for_multi_node_replicas():
    extra = ["--distributed-executor-backend=mp", "--nnodes", "2", "--enforce-eager"]
    multi = run(engine={"extraArgs": extra})
    conflicts = [f for f in multi.findings if f.code == "extra_arg_conflicts_with_multi_node_launch"]
    assert [f.field for f in conflicts] == ["spec.engine.extraArgs[0]", "spec.engine.extraArgs[1]"]
    single = run(engine={"pipelineParallelSize": 1, "maxModelLen": 8192, "extraArgs": extra})
    assert "extra_arg_conflicts_with_multi_node_launch" not in {f.code for f in single.findings}
