"""Per-GPU memory plan: weights, reserve and KV cache under gpuMemoryUtilization, and the context that fits.

The model (constants in knowledge/data/planner.yaml, calibrated there against vLLM's published Llama-4 runs)::

    usable   = GPU memory x gpuMemoryUtilization
    weights  = (16-bit parameters x 2 B + quantized parameters x their bytes) / (TP x PP)   -- all experts
    reserve  = fixed + multi-GPU buffers (TP x PP > 1) + RoPE cos/sin cache + a share of 16-bit routed experts
    KV cache = usable - weights - reserve
    per layer and token on one GPU: 2 (K, V) x max(1, kv_heads // TP) x head_dim x KV dtype bytes

KV allocation rule for chunked-local layers (Llama-4's RoPE layers, 3 of every 4):

* **Full-length rule** (vLLM < 0.14.0, or ``--disable-hybrid-kv-cache-manager``): every layer, chunked-local or
  global, keeps ``max_model_len`` tokens. vLLM 0.8.x gives every decoder layer a ``FullAttentionSpec``; 0.10.1 to
  0.13.x turn the hybrid KV-cache manager off for chunked local attention by default (PR #21761).
* **Hybrid rule** (vLLM >= 0.14.0, where ``VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE`` defaults to 1): a
  chunked-local layer keeps at most ``min(attention_chunk_size + max_num_batched_tokens, max_model_len)`` tokens
  per request (``ChunkedLocalAttentionSpec.max_memory_usage_bytes``); global layers keep the full length.

One full-length sequence must fit (vLLM refuses to start otherwise); the plan names the largest max_model_len
that does.
"""

from __future__ import annotations

from dataclasses import dataclass

from llama_operator.api import MemoryPlan
from llama_operator.knowledge import Knowledge, ModelFacts
from llama_operator.knowledge.gpus import GpuFacts
from llama_operator.planning.engine import EngineSettings

GIB = float(1 << 30)
FULL_LENGTH = "FullLength"
HYBRID = "HybridChunkedLocal"


@dataclass(frozen=True, slots=True)
class MemoryBreakdown:
    """One GPU of one replica, in GiB unless named otherwise."""

    gpu_memory_gib: float
    usable_gib: float
    weights_gib: float
    reserve_gib: float
    kv_cache_gib: float
    kv_rule: str
    # Bytes per token on one GPU of one layer, and the layer counts that hold full-length / capped KV.
    layer_bytes_per_token: int
    full_length_layers: int
    capped_layers: int
    capped_tokens: int
    block_size: int
    max_model_len: int
    model_max_len: int

    @property
    def kv_bytes_per_token(self) -> int:
        """KV bytes per token on one GPU with every layer at full length (the full-length rule's cost)."""
        return self.layer_bytes_per_token * (self.full_length_layers + self.capped_layers)

    @property
    def kv_cache_bytes(self) -> int:
        return max(0, int(self.kv_cache_gib * GIB))

    def bytes_for(self, length: int) -> int:
        """KV bytes one sequence of ``length`` tokens needs on one GPU."""
        padded = -(-length // self.block_size) * self.block_size
        capped = min(padded, self.capped_tokens)
        return self.layer_bytes_per_token * (self.full_length_layers * padded + self.capped_layers * capped)

    @property
    def sequence_gib(self) -> float:
        """KV GiB of one sequence at the effective max_model_len."""
        return self.bytes_for(self.max_model_len) / GIB

    @property
    def max_model_len_that_fits(self) -> int:
        """Largest max_model_len whose one full-length sequence fits, capped by the model's maximum."""
        available = self.kv_cache_bytes
        per_full = self.layer_bytes_per_token * (self.full_length_layers + self.capped_layers)
        if available <= 0 or per_full <= 0:
            return 0
        blocks = available // (per_full * self.block_size)
        length = blocks * self.block_size
        if length > self.capped_tokens and self.capped_layers:
            # Past the cap the capped layers cost a constant; only the full-length layers grow.
            rest = available - self.layer_bytes_per_token * self.capped_layers * self.capped_tokens
            per_growing = self.layer_bytes_per_token * self.full_length_layers
            length = (
                self.model_max_len if per_growing == 0 else rest // (per_growing * self.block_size) * self.block_size
            )
        return min(length, self.model_max_len)

    @property
    def kv_cache_tokens(self) -> int:
        """Tokens the KV cache holds across sequences (vLLM's "GPU KV cache size"), in the rule's accounting."""
        per_token = self.layer_bytes_per_token * (self.full_length_layers or 1)
        if self.kv_rule == FULL_LENGTH:
            per_token = self.kv_bytes_per_token
        return self.kv_cache_bytes // per_token if per_token else 0

    @property
    def max_concurrent_sequences(self) -> float:
        """Full-length sequences at the effective max_model_len the KV cache holds at once."""
        need = self.bytes_for(self.max_model_len)
        return self.kv_cache_bytes / need if need else 0.0

    def to_status(self) -> MemoryPlan:
        return MemoryPlan(
            gpu_memory_gib=round(self.gpu_memory_gib, 2),
            usable_gib=round(self.usable_gib, 2),
            weights_gib=round(self.weights_gib, 2),
            reserve_gib=round(self.reserve_gib, 2),
            kv_cache_gib=round(self.kv_cache_gib, 2),
            kv_cache_rule=self.kv_rule,
            kv_bytes_per_token=self.kv_bytes_per_token,
            kv_cache_tokens=self.kv_cache_tokens,
            max_model_len_that_fits=self.max_model_len_that_fits,
            max_concurrent_full_length_sequences=round(self.max_concurrent_sequences, 2),
        )


def quantized_parameters(model: ModelFacts, online_quantization: str | None) -> tuple[int, float]:
    """(parameters stored quantized, bytes per quantized parameter)."""
    parts = model.breakdown()
    quant = model.quantization
    if quant is not None:
        if quant.modules == "routed_experts":
            return parts["routed_experts"], quant.weight_bytes
        if quant.modules == "mlp_except_first_last":
            return parts["mlp"] - parts["mlp_first_last"], quant.weight_bytes
        return max(0, model.parameters - parts["embeddings"]), quant.weight_bytes
    if online_quantization == "fp8":
        # vLLM's online FP8 quantizes every linear layer (experts included); embeddings and vision stay 16-bit.
        return parts["text_total"] - parts["embeddings"], 1.0
    return 0, 0.0


def weights_bytes_per_gpu(model: ModelFacts, gpus: int, online_quantization: str | None) -> tuple[float, float]:
    """(weight bytes on one GPU, 16-bit routed-expert bytes on one GPU)."""
    quantized, quant_bytes = quantized_parameters(model, online_quantization)
    dense = max(0, model.parameters - quantized)
    total = dense * model.dtype_bytes + quantized * quant_bytes
    # Every quantization scheme above stores the routed experts quantized; only unquantized MoE has 16-bit ones.
    routed_16bit = 0 if quantized else model.breakdown()["routed_experts"] * model.dtype_bytes
    return total / gpus, routed_16bit / gpus


def plan_memory(model: ModelFacts, gpu: GpuFacts, settings: EngineSettings, knowledge: Knowledge) -> MemoryBreakdown:
    """The per-GPU plan of one replica (pure arithmetic; validated inputs only)."""
    constants = knowledge.memory
    tp = settings.tensor_parallel_size
    pp = settings.pipeline_parallel_size
    gpus = tp * pp
    usable = gpu.memory_gib * settings.gpu_memory_utilization
    weights, routed_16bit = weights_bytes_per_gpu(model, gpus, settings.quantization)
    # vLLM's rotary embedding caches cos/sin for every position up to max_position_embeddings, in the model dtype,
    # on every GPU (rotary_embedding.py `cos_sin_cache`): 2.5 GiB for Scout's 10M positions.
    rope_cache = model.max_position_embeddings * model.head_dim * model.dtype_bytes
    reserve = (
        constants.fixed_gib
        + (constants.multi_gpu_gib if gpus > 1 else 0.0)
        + rope_cache / GIB
        + constants.moe_16bit_fraction * routed_16bit / GIB
    )
    kv_dtype_bytes = model.dtype_bytes if settings.kv_cache_dtype == "auto" else 1
    layer_bytes = 2 * max(1, model.num_kv_heads // tp) * model.head_dim * kv_dtype_bytes
    local = -(-model.chunked_local_layers // pp)
    global_ = -(-model.global_layers // pp)
    model_max = model.derived_max_model_len()
    if settings.hybrid_kv_cache and model.attention_chunk_size:
        rule = HYBRID
        full_layers, capped_layers = global_, local
        cap = model.attention_chunk_size + settings.max_num_batched_tokens
        capped_tokens = -(-cap // constants.block_size) * constants.block_size
    else:
        rule = FULL_LENGTH
        full_layers, capped_layers, capped_tokens = global_ + local, 0, 0
    return MemoryBreakdown(
        gpu_memory_gib=gpu.memory_gib,
        usable_gib=usable,
        weights_gib=weights / GIB,
        reserve_gib=reserve,
        kv_cache_gib=usable - weights / GIB - reserve,
        kv_rule=rule,
        layer_bytes_per_token=layer_bytes,
        full_length_layers=full_layers,
        capped_layers=capped_layers,
        capped_tokens=capped_tokens,
        block_size=constants.block_size,
        max_model_len=settings.max_model_len,
        model_max_len=model_max,
    )
