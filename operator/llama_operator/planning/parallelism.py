"""Tensor/pipeline parallelism against the model's heads and layers and against the nodes' GPUs."""

from __future__ import annotations

from llama_operator.api import LlamaDeploymentSpec
from llama_operator.knowledge import ModelFacts
from llama_operator.knowledge.gpus import GpuFacts
from llama_operator.planning.engine import extra_arg_flags
from llama_operator.planning.findings import Finding

TP_FIELD = "spec.engine.tensorParallelSize"
PP_FIELD = "spec.engine.pipelineParallelSize"


def _divisors(n: int, limit: int = 64) -> list[int]:
    return [d for d in range(1, min(n, limit) + 1) if n % d == 0]


def _pad64(value: int) -> int:
    # vLLM pads the vocabulary to a multiple of 64 before splitting it (pad_vocab_size, vocab_parallel_embedding.py).
    return -(-value // 64) * 64


def load_splits(model: ModelFacts) -> list[tuple[str, int]]:
    """What vLLM splits over TP while building the model, in the order it builds it: (what and where, size).
    Each is split with ``divide`` (vllm/distributed/utils.py), which asserts "<size> is not divisible by <tp>".
    Llama-4 builds its vision tower first (Llama4ForConditionalGeneration, vllm/model_executor/models/mllama4.py)."""
    splits: list[tuple[str, int]] = []
    if model.vision_hidden_size:
        splits += [
            ("the vision tower's patch embedding (Llama4UnfoldConvolution, mllama4.py)", model.vision_hidden_size),
            ("the vision tower's attention heads (mllama4.py)", model.vision_attention_heads),
            ("the vision tower's MLP (mllama4.py)", model.vision_intermediate_size),
        ]
    splits.append(("the vocabulary embedding (VocabParallelEmbedding, padded to 64)", _pad64(model.vocab_size)))
    width = model.intermediate_size_mlp if model.is_moe else model.intermediate_size
    splits.append(("the MLP (MergedColumnParallelLinear)", width))
    if model.is_moe:
        splits.append(("the experts (FusedMoE)", model.intermediate_size))
    return [(what, size) for what, size in splits if size]


def _load_failures(model: ModelFacts, tp: int, vision_data_parallel: bool) -> list[str]:
    failures = []
    for what, size in load_splits(model):
        if vision_data_parallel and "vision" in what:
            continue
        if size % tp:
            failures.append(f"{what}: '{size} is not divisible by {tp}'")
    return failures


def valid_tensor_parallel_sizes(model: ModelFacts, limit: int = 64, vision_data_parallel: bool = False) -> list[int]:
    """TP sizes vLLM can build the model with: divide the attention heads, fit the KV heads and split every
    weight vLLM splits."""
    return [
        tp
        for tp in _divisors(model.num_attention_heads, limit)
        if kv_heads_compatible(model.num_kv_heads, tp) and not _load_failures(model, tp, vision_data_parallel)
    ]


def kv_heads_compatible(kv_heads: int, tp: int) -> bool:
    # vLLM's QKVParallelLinear: with tp <= kv heads each rank takes kv_heads/tp heads (must divide); with more ranks
    # than KV heads each head is replicated tp/kv_heads times (must divide the other way).
    return kv_heads % tp == 0 if tp <= kv_heads else tp % kv_heads == 0


def check_heads(
    spec: LlamaDeploymentSpec, model: ModelFacts, gpus_per_node: int = 64, extra: dict[str, str] | None = None
) -> list[Finding]:
    """TP against what vLLM checks in its config (attention heads) and splits while loading (in its order: vision
    tower, vocabulary, QKV projection, MLP), PP against the layers."""
    tp = spec.engine.tensor_parallel_size
    pp = spec.engine.pipeline_parallel_size
    vision_dp = (extra or {}).get("--mm-encoder-tp-mode") == "data"
    findings: list[Finding] = []
    options = ", ".join(str(size) for size in valid_tensor_parallel_sizes(model, gpus_per_node, vision_dp))
    fix = f"use a tensor-parallel size from: {options}"
    failures = _load_failures(model, tp, vision_dp)
    if model.num_attention_heads % tp:
        findings.append(
            Finding(
                "tp_not_divisor_of_attention_heads",
                "error",
                TP_FIELD,
                f"tensorParallelSize {tp} does not divide the model's {model.num_attention_heads} attention heads; "
                "vLLM refuses the configuration at startup",
                fix,
            )
        )
    elif not kv_heads_compatible(model.num_kv_heads, tp) or failures:
        qkv = f"the QKV projection ({model.num_kv_heads} KV heads)"
        if not kv_heads_compatible(model.num_kv_heads, tp):
            # The decoder layers come after the vision tower and the vocabulary embedding.
            failures.insert(sum(1 for failure in failures if "vision" in failure or "vocab" in failure), qkv)
        first, *rest = failures
        # One line per part: the vision tower's further splits fail for the same reason as its first.
        rest = [failure for failure in rest if "vision" not in failure]
        then = f"; it would fail again at {'; '.join(rest)}" if rest else ""
        findings.append(
            Finding(
                "tp_incompatible_with_kv_heads"
                if not kv_heads_compatible(model.num_kv_heads, tp)
                else "tp_not_divisor_of_model_dimension",
                "error",
                TP_FIELD,
                f"tensorParallelSize {tp}: vLLM's config check passes ({model.num_attention_heads} attention heads "
                f"divide) but loading the model fails on every worker, first at {first}{then}",
                fix,
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


# vLLM flags the multi-node launch sets (render/lws.py): in extraArgs they would fight the rendered launch.
MULTI_NODE_LAUNCH_FLAGS = (
    "--distributed-executor-backend",
    "--nnodes",
    "-n",
    "--node-rank",
    "-r",
    "--master-addr",
    "--master-port",
    "--headless",
)


def _shape(tp: int, pp: int, per_node: int) -> str:
    gpus = tp * pp
    nodes = -(-gpus // per_node)
    where = "one node" if nodes == 1 else f"{nodes} nodes"
    return f"TP {tp} x PP {pp} ({gpus} GPUs, {where})"


def _even_shapes(tp: int, pp: int, per_node: int) -> list[str]:
    """The nearest pipeline sizes below and above ``pp`` whose TP x PP fills whole nodes (or fits in one)."""

    def fits(p: int) -> bool:
        return tp * p <= per_node or (tp * p) % per_node == 0

    lower = next((p for p in range(pp - 1, 0, -1) if fits(p)), None)
    upper = next(p for p in range(pp + 1, pp + per_node + 1) if fits(p))
    return [_shape(tp, p, per_node) for p in (lower, upper) if p is not None]


def _node_count_fix(tp: int, per_node: int, node_count: int, nodes: int) -> str:
    if nodes <= node_count:
        return f"use at most {node_count // nodes} replicas, or give the deployment more nodes"
    largest_pp = node_count * per_node // tp
    fit = f"at most {node_count * per_node} GPUs per replica fit on {node_count} node(s)"
    if largest_pp >= 1:
        fit += f": {_shape(tp, largest_pp, per_node)}, if the memory plan allows it"
    return f"{fit}; or use a GPU with more memory, an FP8 checkpoint, or more nodes"


def check_placement(spec: LlamaDeploymentSpec, gpu: GpuFacts | None) -> list[Finding]:
    """TP x PP against the GPUs of a node and the nodes available (what a LeaderWorkerSet can place)."""
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
                f"a replica needs {gpus} GPUs (TP {tp} x PP {pp}), which does not fill whole {per_node}-GPU nodes; "
                "each pod of a multi-node replica takes one whole node",
                "choose TP x PP as a multiple of the GPUs per node, e.g. "
                + " or ".join(_even_shapes(tp, pp, per_node)),
            )
        )
    elif nodes > 1:
        findings.append(
            Finding(
                "multi_node_replica",
                "info",
                PP_FIELD,
                f"each replica spans {nodes} nodes ({gpus} GPUs, {per_node} per node) as one LeaderWorkerSet "
                "group; pipeline stages talk over the node network",
                "",
            )
        )
        if per_node % tp:
            findings.append(
                Finding(
                    "tp_group_spans_nodes",
                    "warning",
                    TP_FIELD,
                    f"tensorParallelSize {tp} does not divide the {per_node} GPUs of a node, so some tensor-parallel "
                    "groups straddle two nodes and all-reduce over the node network on every layer",
                    f"use a tensorParallelSize that divides {per_node}",
                )
            )
    node_count = spec.resources.node_count
    if node_count is not None and spec.replicas * nodes > node_count:
        needed = f"{spec.replicas} replica(s) x {nodes} node(s) ({per_node} GPUs each) need {spec.replicas * nodes}"
        findings.append(
            Finding(
                "not_enough_nodes",
                "error",
                PP_FIELD if nodes > node_count else "spec.replicas",
                f"{needed} nodes of {spec.resources.gpu_product}; spec.resources.nodeCount is {node_count}",
                _node_count_fix(tp, per_node, node_count, nodes),
            )
        )
    return findings + _check_multi_node_args(spec, nodes)


def _check_multi_node_args(spec: LlamaDeploymentSpec, nodes: int) -> list[Finding]:
    """extraArgs that set what the multi-node launch sets itself (only when a replica spans nodes)."""
    if nodes <= 1:
        return []
    findings: list[Finding] = []
    for field, name in extra_arg_flags(spec):
        if name in MULTI_NODE_LAUNCH_FLAGS:
            findings.append(
                Finding(
                    "extra_arg_conflicts_with_multi_node_launch",
                    "error",
                    field,
                    f"{name} is set by the operator's multi-node launch (Ray across the LeaderWorkerSet group)",
                    f"remove {name} from extraArgs",
                )
            )
    return findings
