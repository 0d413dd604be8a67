"""The engine settings vLLM will actually run with: the spec, the extraArgs that change planning, and vLLM's
defaults for what both leave out."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llama_operator.api import LlamaDeploymentSpec
from llama_operator.knowledge import Knowledge, ModelFacts
from llama_operator.knowledge.gpus import GpuFacts
from llama_operator.knowledge.issues import parse_version

GIB_MIB = 1024
# vLLM 0.32 SpeculativeConfig.use_eagle(): methods that draft from the target's hidden states.
EAGLE_METHODS = frozenset({"eagle", "eagle3", "mtp", "dflash", "dspark"})

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


EXTRA_ARGS = "spec.engine.extraArgs"


def extra_arg_flags(spec: LlamaDeploymentSpec) -> list[tuple[str, str]]:
    """Each extraArgs entry as (its field path, its flag name without a ``=value``): what findings point at."""
    return [(f"{EXTRA_ARGS}[{index}]", arg.partition("=")[0]) for index, arg in enumerate(spec.engine.extra_args)]


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
    # Batches scheduled but not yet settled (VllmConfig.max_concurrent_batches); 1 where the version's chunked-local
    # cap counts a single batch.
    max_concurrent_batches: int = 1
    speculative_method: str | None = None
    num_speculative_tokens: int = 0
    # Why vLLM would refuse the explicit --no-disable-hybrid-kv-cache-manager, or None.
    hybrid_conflict: str | None = None

    @property
    def max_in_flight_tokens(self) -> int:
        """Tokens scheduled but not yet freed (VllmConfig.max_in_flight_tokens in vllm/config/vllm.py)."""
        return self.max_concurrent_batches * self.max_num_batched_tokens

    @property
    def gpus_per_replica(self) -> int:
        return self.tensor_parallel_size * self.pipeline_parallel_size

    @property
    def cudagraph_capture_ceiling(self) -> int:
        """vLLM's default largest CUDA-graph capture size: min(2 x max_num_seqs, 512) (vllm-0.14.0 config)."""
        return min(2 * self.max_num_seqs, 512)


def default_max_num_batched_tokens(gpu: GpuFacts | None, version: Any, knowledge: Knowledge) -> int:
    """vLLM's OpenAI-server default (EngineArgs.get_batch_defaults, vllm/engine/arg_utils.py): 16,384 on GPUs of
    >= 160 GiB (from large_gpu_batch_from), 8,192 on >= 70 GiB except A100s, else 2,048. Without a GPU vLLM falls
    back to 2,048 too."""
    if gpu is None:
        return 2048
    if gpu.memory_mib >= 160 * GIB_MIB and version is not None and version >= knowledge.memory.large_gpu_batch_from:
        return 16384
    if gpu.memory_mib >= 70 * GIB_MIB and "a100" not in gpu.product.lower():
        return 8192
    return 2048


def speculative(extra: dict[str, str]) -> tuple[str | None, int]:
    """(method, num_speculative_tokens) of ``--speculative-config`` JSON; a draft model without a method is
    vLLM's "draft_model"."""
    text = extra.get("--speculative-config", extra.get("--speculative_config"))
    if not text:
        return None, 0
    try:
        config = json.loads(text)
    except ValueError:
        return None, 0
    if not isinstance(config, dict):
        return None, 0
    method = config.get("method")
    tokens = config.get("num_speculative_tokens")
    count = tokens if isinstance(tokens, int) and not isinstance(tokens, bool) and tokens > 0 else 0
    if not isinstance(method, str) or not method:
        method = "draft_model" if config.get("model") else None
    return (method.lower() if method else None), count


def _concurrent_batches(extra: dict[str, str], pp: int, version: Any, knowledge: Knowledge) -> int:
    """VllmConfig.max_concurrent_batches (vllm/config/vllm.py): PP + 1 with async scheduling, PP without. Async
    scheduling is on by default with every 0.32 executor, a multi-node replica's Ray one included (RayExecutorV2,
    the default, supports it), and Model Runner V2 (the 0.32 default) keeps it with PP; where an older release's
    runner or executor turns it off, PP + 1 over-counts by one batch, which only lowers the suggestion. Before
    in_flight_batches_from the chunked-local cap counted one batch."""
    if version is None or version < knowledge.memory.in_flight_batches_from:
        return 1
    return pp if "--no-async-scheduling" in extra else pp + 1


def _hybrid(model: ModelFacts, extra: dict[str, str], method: str | None, version: Any, knowledge: Knowledge) -> bool:
    """VllmConfig.__post_init__'s hybrid KV-cache manager decision for chunked local attention: off before
    hybrid_chunked_local_from, with an EAGLE-family draft, by flag, or with a KV connector (whether the connector
    supports it is decided by its class at runtime; the full-length rule is the safe assumption)."""
    return (
        model.has_chunked_attention
        and version is not None
        and version >= knowledge.memory.hybrid_chunked_local_from
        and "--disable-hybrid-kv-cache-manager" not in extra
        and method not in EAGLE_METHODS
        and "--kv-transfer-config" not in extra
    )


def engine_settings(
    spec: LlamaDeploymentSpec, model: ModelFacts, gpu: GpuFacts | None, knowledge: Knowledge
) -> EngineSettings:
    engine = spec.engine
    extra = flag_values(engine.extra_args)
    version = parse_version(engine.vllm_version)
    batched = _positive_int(extra.get("--max-num-batched-tokens")) or default_max_num_batched_tokens(
        gpu, version, knowledge
    )
    backend = extra.get("--attention-backend", "").upper() or (gpu.attention_backend if gpu else "FLASH_ATTN")
    method, draft_tokens = speculative(extra)
    hybrid = _hybrid(model, extra, method, version, knowledge)
    conflict = None
    if model.has_chunked_attention and "--no-disable-hybrid-kv-cache-manager" in extra and method in EAGLE_METHODS:
        conflict = f"chunked local attention with {method} speculative decoding"
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
        max_concurrent_batches=_concurrent_batches(extra, engine.pipeline_parallel_size, version, knowledge),
        speculative_method=method,
        num_speculative_tokens=draft_tokens,
        hybrid_conflict=conflict,
    )
