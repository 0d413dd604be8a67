"""Tensor/pipeline parallelism against the model's heads and layers and against the nodes' GPUs."""

from __future__ import annotations

from llama_operator.api import LlamaDeploymentSpec
from llama_operator.knowledge import ModelFacts
from llama_operator.knowledge.gpus import GpuFacts
from llama_operator.planning.findings import Finding

TP_FIELD = "spec.engine.tensorParallelSize"
PP_FIELD = "spec.engine.pipelineParallelSize"


def _divisors(n: int, limit: int = 64) -> list[int]:
    return [d for d in range(1, min(n, limit) + 1) if n % d == 0]


def valid_tensor_parallel_sizes(model: ModelFacts, limit: int = 64) -> list[int]:
    """TP sizes vLLM can build the model with: divide the attention heads and fit the KV heads."""
    return [tp for tp in _divisors(model.num_attention_heads, limit) if kv_heads_compatible(model.num_kv_heads, tp)]


def kv_heads_compatible(kv_heads: int, tp: int) -> bool:
    # vLLM's QKVParallelLinear: with tp <= kv heads each rank takes kv_heads/tp heads (must divide); with more ranks
    # than KV heads each head is replicated tp/kv_heads times (must divide the other way).
    return kv_heads % tp == 0 if tp <= kv_heads else tp % kv_heads == 0


def check_heads(spec: LlamaDeploymentSpec, model: ModelFacts, gpus_per_node: int = 64) -> list[Finding]:
    """TP against the attention and KV heads (vLLM's QKV split), PP against the layers."""
    tp = spec.engine.tensor_parallel_size
    pp = spec.engine.pipeline_parallel_size
    findings: list[Finding] = []
    options = ", ".join(str(size) for size in valid_tensor_parallel_sizes(model, gpus_per_node))
    if model.num_attention_heads % tp:
        findings.append(
            Finding(
                "tp_not_divisor_of_attention_heads",
                "error",
                TP_FIELD,
                f"tensorParallelSize {tp} does not divide the model's {model.num_attention_heads} attention heads; "
                "vLLM refuses the configuration at startup",
                f"use a tensor-parallel size from: {options}",
            )
        )
    elif not kv_heads_compatible(model.num_kv_heads, tp):
        findings.append(
            Finding(
                "tp_incompatible_with_kv_heads",
                "error",
                TP_FIELD,
                f"tensorParallelSize {tp} neither divides nor is a multiple of the model's {model.num_kv_heads} KV "
                f"heads; vLLM's config check passes ({model.num_attention_heads} heads divide) but building the QKV "
                "projection then fails on every worker",
                f"use a tensor-parallel size from: {options}",
            )
        )
    if pp > model.num_layers:
        findings.append(
            Finding(
                "pp_exceeds_layers",
                "error",
                PP_FIELD,
                f"pipelineParallelSize {pp} is more than the model's {model.num_layers} layers",
                f"use at most {model.num_layers} pipeline stages",
            )
        )
    return findings


def nodes_per_replica(spec: LlamaDeploymentSpec, gpu: GpuFacts | None) -> tuple[int, int]:
    """(GPUs per node, nodes one replica spans)."""
    per_node = spec.resources.gpus_per_node or (gpu.gpus_per_node if gpu else 8)
    gpus = spec.engine.tensor_parallel_size * spec.engine.pipeline_parallel_size
    return per_node, -(-gpus // per_node)


def check_placement(spec: LlamaDeploymentSpec, gpu: GpuFacts | None) -> list[Finding]:
    """TP x PP against the GPUs of a node and the nodes available."""
    tp = spec.engine.tensor_parallel_size
    pp = spec.engine.pipeline_parallel_size
    gpus = tp * pp
    per_node, nodes = nodes_per_replica(spec, gpu)
    findings: list[Finding] = []
    if tp > per_node:
        findings.append(
            Finding(
                "tp_exceeds_gpus_per_node",
                "error",
                TP_FIELD,
                f"tensorParallelSize {tp} is more than the {per_node} GPUs of a node; tensor parallelism needs "
                "NVLink-connected GPUs in one node",
                f"use tensorParallelSize <= {per_node} and pipelineParallelSize to span nodes",
            )
        )
    elif nodes > 1 and gpus % per_node:
        findings.append(
            Finding(
                "uneven_multi_node_split",
                "error",
                PP_FIELD,
                f"a replica needs {gpus} GPUs (TP {tp} x PP {pp}), which does not fill whole {per_node}-GPU nodes",
                f"choose TP x PP as a multiple of {per_node}, or at most {per_node}",
            )
        )
    elif nodes > 1:
        findings.append(
            Finding(
                "multi_node_replica",
                "info",
                PP_FIELD,
                f"each replica spans {nodes} nodes ({gpus} GPUs, {per_node} per node); pipeline stages talk over "
                "the node network",
                "",
            )
        )
    if spec.resources.node_count is not None and spec.replicas * nodes > spec.resources.node_count:
        findings.append(
            Finding(
                "not_enough_nodes",
                "error",
                "spec.replicas",
                f"{spec.replicas} replicas x {nodes} node(s) each need {spec.replicas * nodes} nodes; "
                f"spec.resources.nodeCount is {spec.resources.node_count}",
                f"use at most {spec.resources.node_count // nodes} replicas or more nodes",
            )
        )
    return findings
