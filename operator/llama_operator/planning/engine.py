"""The engine settings vLLM will actually run with: the spec, the extraArgs that change planning, and vLLM's
defaults for what both leave out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from llama_operator.api import LlamaDeploymentSpec
from llama_operator.knowledge import Knowledge, ModelFacts
from llama_operator.knowledge.gpus import GpuFacts
from llama_operator.knowledge.issues import parse_version

# Flags the operator derives from the spec; extraArgs may not set them (the spec field is the one place).
SPEC_FLAGS: dict[str, str] = {
    "--model": "spec.model.name",
    "--served-model-name": "spec.model.name",
    "--revision": "spec.model.revision",
    "--tensor-parallel-size": "spec.engine.tensorParallelSize",
    "-tp": "spec.engine.tensorParallelSize",
    "--pipeline-parallel-size": "spec.engine.pipelineParallelSize",
    "-pp": "spec.engine.pipelineParallelSize",
    "--max-model-len": "spec.engine.maxModelLen",
    "--gpu-memory-utilization": "spec.engine.gpuMemoryUtilization",
    "--max-num-seqs": "spec.engine.maxNumSeqs",
    "--kv-cache-dtype": "spec.engine.kvCacheDtype",
    "--quantization": "spec.engine.quantization",
    "-q": "spec.engine.quantization",
    "--host": "(set by the operator)",
    "--port": "(set by the operator)",
}


def flag_values(args: Sequence[str]) -> dict[str, str]:
    """``--flag value`` and ``--flag=value`` pairs of an argument list; a flag without a value maps to ""."""
    values: dict[str, str] = {}
    index = 0
    while index < len(args):
        arg = args[index]
        if arg.startswith("-"):
            name, sep, value = arg.partition("=")
            if not sep and index + 1 < len(args) and not args[index + 1].startswith("-"):
                value = args[index + 1]
                index += 1
            values[name] = value
        index += 1
    return values


def _positive_int(text: str | None) -> int | None:
    if text is None or not text.isdigit() or len(text) > 12:
        return None
    value = int(text)
    return value if value > 0 else None


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """Everything the known-issue predicates and the memory planner read, resolved once per validation."""

    vllm_version: str
    patched: bool
    tensor_parallel_size: int
    pipeline_parallel_size: int
    gpu_memory_utilization: float
    max_model_len: int
    max_model_len_from_spec: bool
    max_num_seqs: int
    max_num_seqs_from_spec: bool
    max_num_batched_tokens: int
    kv_cache_dtype: str
    quantization: str | None
    attention_backend: str
    enforce_eager: bool
    hybrid_kv_cache: bool
    extra: dict[str, str]

    @property
    def gpus_per_replica(self) -> int:
        return self.tensor_parallel_size * self.pipeline_parallel_size

    @property
    def cudagraph_capture_ceiling(self) -> int:
        """vLLM's default largest CUDA-graph capture size: min(2 x max_num_seqs, 512) (vllm-0.14.0 config)."""
        return min(2 * self.max_num_seqs, 512)


def engine_settings(
    spec: LlamaDeploymentSpec, model: ModelFacts, gpu: GpuFacts | None, knowledge: Knowledge
) -> EngineSettings:
    engine = spec.engine
    extra = flag_values(engine.extra_args)
    batched = _positive_int(extra.get("--max-num-batched-tokens")) or (gpu.max_num_batched_tokens if gpu else 2048)
    backend = extra.get("--attention-backend", "").upper() or (gpu.attention_backend if gpu else "FLASH_ATTN")
    version = parse_version(engine.vllm_version)
    hybrid = (
        model.has_chunked_attention
        and version is not None
        and version >= knowledge.memory.hybrid_chunked_local_from
        and "--disable-hybrid-kv-cache-manager" not in extra
    )
    return EngineSettings(
        vllm_version=engine.vllm_version,
        patched=engine.patched,
        tensor_parallel_size=engine.tensor_parallel_size,
        pipeline_parallel_size=engine.pipeline_parallel_size,
        gpu_memory_utilization=engine.gpu_memory_utilization,
        max_model_len=engine.max_model_len or model.derived_max_model_len(),
        max_model_len_from_spec=engine.max_model_len is not None,
        max_num_seqs=engine.max_num_seqs or knowledge.defaults.max_num_seqs,
        max_num_seqs_from_spec=engine.max_num_seqs is not None,
        max_num_batched_tokens=batched,
        kv_cache_dtype=engine.kv_cache_dtype,
        quantization=engine.quantization,
        attention_backend=backend,
        enforce_eager="--enforce-eager" in extra,
        hybrid_kv_cache=hybrid,
        extra=extra,
    )
