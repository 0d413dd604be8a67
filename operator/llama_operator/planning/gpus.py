"""Which GPU a spec names: the catalog, GPUs seen on the cluster's nodes, and GPU feature discovery's suffixes.

``spec.resources.gpuProduct`` is a ``nvidia.com/gpu.product`` label. The catalog has whole boards. GFD appends
``-SHARED`` to a time-sliced GPU (the board's facts hold; the GPU is shared) and writes ``<board>-MIG-<profile>``
under the MIG single strategy (one slice, whose memory only the node's ``nvidia.com/gpu.memory`` label gives).
A product the catalog lacks is planned from that label when the operator has seen such nodes
(``Knowledge.with_observed_gpus``); offline, and with no such node, it is not planned.
"""

from __future__ import annotations

from llama_operator.api import LlamaDeploymentSpec
from llama_operator.knowledge import Knowledge
from llama_operator.knowledge.gpus import GpuFacts, ProductLabel, parse_product
from llama_operator.planning.engine import EXTRA_ARGS, flag_values
from llama_operator.planning.findings import Finding

FIELD = "spec.resources.gpuProduct"
BF16_FLOOR = (8, 0)  # vllm/platforms/cuda.py supported_dtypes: bfloat16 from compute capability 8.0


def _catalog(knowledge: Knowledge, key: str) -> GpuFacts | None:
    gpu = knowledge.gpu(key)
    return gpu if gpu is not None and not gpu.observed_nodes else None


def _lookup(label: str, parsed: ProductLabel, knowledge: Knowledge) -> GpuFacts | None:
    """The catalog's board first (-SHARED names the same board), then what nodes labelled this product showed."""
    return _catalog(knowledge, parsed.unshared) or knowledge.gpu(label) or knowledge.gpu(parsed.unshared)


def _capability(capability: tuple[int, int] | None) -> str:
    return f"{capability[0]}.{capability[1]}" if capability else "unknown"


def _observed(label: str, gpu: GpuFacts) -> Finding:
    capability = (
        f"compute capability {_capability(gpu.compute_capability)} from nvidia.com/gpu.compute.*"
        if gpu.compute_capability
        else f"no compute capability label, {gpu.attention_backend} assumed"
    )
    return Finding(
        "gpu_product_from_node_label",
        "warning",
        FIELD,
        f"GPU product {label!r} is not in the GPU catalog: memory is planned from the nodes' nvidia.com/gpu.memory "
        f"label: {gpu.memory_mib} MiB on {gpu.observed_nodes} node(s), {gpu.gpus_per_node} GPUs per node, "
        f"{capability}",
        "nothing to change here; `llama-operator validate` outside the cluster cannot plan this product until it "
        "is added to the GPU catalog (knowledge/data/gpus.yaml)",
    )


def _time_sliced(label: str) -> Finding:
    return Finding(
        "gpu_time_sliced",
        "warning",
        FIELD,
        f"{label!r} is a time-sliced GPU (GPU feature discovery's -SHARED suffix): memory other pods hold on the "
        "same GPU counts against gpuMemoryUtilization, and vLLM stops at startup when less is free than it asks for "
        "('Free memory on device ... is less than desired GPU memory utilization', vllm/v1/worker/utils.py); the "
        "plan assumes the whole GPU",
        "use GPUs that are not time-sliced (the label without -SHARED), or set spec.engine.gpuMemoryUtilization "
        "to this pod's share of the GPU",
    )


def _mig_per_pod(label: str, parsed: ProductLabel, slices: int) -> Finding:
    return Finding(
        "mig_slices_per_pod",
        "warning",
        FIELD,
        f"{label!r} is one MIG slice ({parsed.mig_profile}) of {parsed.base}, and each pod would get {slices} "
        "slices: a CUDA process sees a single MIG device (NVIDIA MIG user guide; NVIDIA/k8s-device-plugin#446), "
        "so tensor or pipeline parallelism over slices in one pod does not start",
        "use a MIG profile large enough for one slice per pod (tensorParallelSize x pipelineParallelSize = 1), or "
        "whole GPUs",
    )


def _mig_unplanned(label: str, parsed: ProductLabel) -> Finding:
    return Finding(
        "mig_memory_not_planned",
        "warning",
        FIELD,
        f"{label!r} is MIG slice {parsed.mig_profile} of {parsed.base}: a slice's memory is not in the GPU catalog "
        "and no node with this label was seen, so memory is not planned",
        f"check the label with `kubectl get nodes -l nvidia.com/gpu.product={label}`; once such nodes exist the "
        "operator plans from their nvidia.com/gpu.memory label",
    )


def _unknown(label: str, knowledge: Knowledge) -> Finding:
    products = ", ".join(facts.product for facts in knowledge.gpus)
    return Finding(
        "unknown_gpu_product",
        "warning",
        FIELD,
        f"GPU product {label!r} is not in the GPU catalog: memory is not planned",
        f"use the node's nvidia.com/gpu.product label, one of: {products}",
    )


def _below_ampere(gpu: GpuFacts, spec: LlamaDeploymentSpec) -> list[Finding]:
    """vLLM on compute capability < 8.0 (T4): no FlashAttention or FlashInfer, no bfloat16."""
    if gpu.compute_capability is None or gpu.compute_capability >= BF16_FLOOR:
        return []
    capability = _capability(gpu.compute_capability)
    dtype = flag_values(spec.engine.extra_args).get("--dtype", "").lower()
    if dtype in ("bfloat16", "bf16"):
        return [
            Finding(
                "bfloat16_unsupported_on_gpu",
                "error",
                EXTRA_ARGS,
                f"--dtype {dtype} on {gpu.product} (compute capability {capability}): vLLM stops at startup with "
                "'Bfloat16 is only supported on GPUs with compute capability of at least 8.0' "
                "(vllm/platforms/cuda.py check_if_supports_dtype)",
                "drop --dtype (auto loads a bfloat16 checkpoint as float16 here) or use --dtype half",
            )
        ]
    return [
        Finding(
            "gpu_compute_capability_below_8_0",
            "warning",
            FIELD,
            f"{gpu.product} has compute capability {capability}: vLLM uses Triton attention there (FlashAttention "
            "and FlashInfer need 8.0) and has no bfloat16, so a bfloat16 checkpoint runs in float16 "
            "(vllm/config/model.py _resolve_auto_dtype), whose narrower range can overflow",
            "prefer a GPU of compute capability 8.0 or newer (A10G, L4, A100, ...) for bfloat16 Llama checkpoints",
        )
    ]


def resolve_gpu(spec: LlamaDeploymentSpec, knowledge: Knowledge) -> tuple[GpuFacts | None, list[Finding]]:
    """The board facts memory is planned with (None: not planned), and the findings about the GPU named."""
    label = spec.resources.gpu_product
    parsed = parse_product(label)
    gpu = _lookup(label, parsed, knowledge)
    findings: list[Finding] = []
    if gpu is None:
        parent = _catalog(knowledge, parsed.base) if parsed.mig_profile else None
        findings.append(_mig_unplanned(label, parsed) if parent else _unknown(label, knowledge))
        return None, findings
    if gpu.observed_nodes:
        findings.append(_observed(label, gpu))
    if parsed.shared:
        findings.append(_time_sliced(label))
    if parsed.mig_profile:
        per_node = spec.resources.gpus_per_node or gpu.gpus_per_node
        slices = min(spec.engine.tensor_parallel_size * spec.engine.pipeline_parallel_size, per_node)
        if slices > 1:
            findings.append(_mig_per_pod(label, parsed, slices))
    return gpu, findings + _below_ampere(gpu, spec)
