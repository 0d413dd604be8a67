"""Per-GPU memory plan: weights, reserve and KV cache under gpuMemoryUtilization, and the context that fits.

The model (constants and their calibration in knowledge/data/planner.yaml)::

    usable   = GPU memory x gpuMemoryUtilization
    weights  = the pipeline stage's layers (+ embeddings and vision tower on the first stage, lm_head on the last),
               counted from config.json, quantized parts at their bytes, split over TP
    reserve  = fixed + multi-GPU buffers (TP x PP > 1) + RoPE cos/sin cache,
               +/- a band: what vLLM only measures at startup (activation peak, CUDA graphs, NCCL buffers)
    KV cache = usable - weights - reserve
    per layer and token on one GPU: 2 (K, V) x max(1, kv_heads // TP) x head_dim x KV dtype bytes

What vLLM checks at startup, and where (vLLM 0.32.0):

* ``check_enough_kv_cache_memory`` / ``get_kv_cache_configs`` (vllm/v1/core/kv_cache_utils.py): one request of
  ``max_model_len`` must fit in the KV memory minus one block the block pool holds back (the null block), on every
  worker (each pipeline stage has its own layers).
* Per layer (vllm/v1/kv_cache_interface.py): a full-attention layer keeps ``cdiv(max_model_len, block)`` blocks; a
  chunked-local layer (Llama-4's RoPE layers, 3 of every 4) keeps
  ``cdiv(min(attention_chunk_size + max_in_flight_tokens, max_model_len), block)`` blocks
  (``ChunkedLocalAttentionSpec.max_admission_blocks_per_request``), where ``max_in_flight_tokens`` is
  ``max_concurrent_batches x max_num_batched_tokens`` (vllm/config/vllm.py) from 0.26.0, one batch from 0.14.0.
* Chunked-local layers are capped only under the hybrid KV-cache manager (``EngineSettings.hybrid_kv_cache``:
  vLLM >= 0.14.0 by default, off with EAGLE drafts, a KV connector or --disable-hybrid-kv-cache-manager);
  otherwise every layer keeps the full length.

The plan names the largest max_model_len that fits at the pessimistic end of the band (what the planner
suggests) and at the optimistic end (beyond it a spec is refused; between the two it is warned about).
"""

from __future__ import annotations

from dataclasses import dataclass

from llama_operator.api import MemoryPlan
from llama_operator.knowledge import Knowledge, ModelFacts
from llama_operator.knowledge.gpus import GpuFacts
from llama_operator.planning.engine import EAGLE_METHODS, EngineSettings

GIB = float(1 << 30)
FULL_LENGTH = "FullLength"
HYBRID = "HybridChunkedLocal"


def pp_partition(num_layers: int, pp: int) -> list[range]:
    """Decoder layers of each pipeline stage, as vLLM's ``get_pp_indices`` (vllm/distributed/utils.py) splits them:
    evenly, the remainder to the stages before the last."""
    size = num_layers // pp
    sizes = [size] * pp
    for index in range(2, num_layers % pp + 2):
        sizes[-index] += 1
    stages, start = [], 0
    for count in sizes:
        stages.append(range(start, start + count))
        start += count
    return stages


def _layer_bytes(model: ModelFacts, index: int, online_quantization: str | None) -> float:
    """Weight bytes of decoder layer ``index``, quantized parts at their bytes per parameter."""
    attention, mlp, routed = model.layer_parameters(index)
    wide = model.dtype_bytes
    quant = model.quantization
    if quant is not None:
        narrow = quant.weight_bytes
        if quant.modules == "routed_experts":
            return (attention + mlp) * wide + routed * narrow
        if quant.modules == "mlp_except_first_last":
            edge = index in (0, model.num_layers - 1)
            return attention * wide + (mlp + routed) * (wide if edge else narrow)
        return (attention + mlp + routed) * narrow
    if online_quantization == "fp8":
        # vLLM's online FP8 quantizes every linear layer of the language model, experts included.
        return float(attention + mlp + routed)
    return float((attention + mlp + routed) * wide)


def stage_weights(model: ModelFacts, layers: range, first: bool, last: bool, tp: int, online: str | None) -> float:
    """Weight bytes on one GPU of the stage holding ``layers``: the embeddings and the vision tower on the first
    stage, the lm_head on the last (a tied lm_head shares the embedding only when one stage holds both)."""
    total = model.layer_sum("weight bytes", layers, online, lambda index: _layer_bytes(model, index, online))
    table = model.vocab_size * model.hidden_size * model.dtype_bytes
    if first:
        total += table + model.vision_parameters * model.dtype_bytes
    if last and not (first and model.tie_word_embeddings):
        total += table
    return total / tp


def eagle_draft_bytes(model: ModelFacts, tp: int) -> float:
    """Weights on one GPU of an EAGLE-family draft head for ``model``: one decoder layer of the target's shape with
    a dense MLP and its own lm_head over the full vocabulary (published EAGLE-3 heads use a smaller draft
    vocabulary; the larger figure is the safe one), split over TP, and the fusion of the target's hidden states
    (3 x hidden -> hidden, EAGLE-3), which vLLM keeps whole on every GPU (a plain ReplicatedLinear-sized layer:
    the oracle measured it unsplit)."""
    h = model.hidden_size
    attention = 2 * h * model.num_attention_heads * model.head_dim + 2 * h * model.num_kv_heads * model.head_dim
    mlp = 3 * h * (model.intermediate_size_mlp if model.is_moe else model.intermediate_size)
    split = attention + mlp + model.vocab_size * h
    return (split / tp + 3 * h * h) * model.dtype_bytes


@dataclass(frozen=True, slots=True)
class MemoryBreakdown:
    """One GPU of one replica (the pipeline stage that binds first), in GiB unless named otherwise."""

    gpu_memory_gib: float
    usable_gib: float
    weights_gib: float
    reserve_gib: float
    band_gib: float
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
    def kv_cache_gib(self) -> float:
        """KV memory at the pessimistic end of the band: what suggestions are sized on."""
        return self.usable_gib - self.weights_gib - self.reserve_gib - self.band_gib

    @property
    def kv_cache_gib_optimistic(self) -> float:
        return self.usable_gib - self.weights_gib - self.reserve_gib + self.band_gib

    @property
    def kv_bytes_per_token(self) -> int:
        """KV bytes per token on one GPU with every layer at full length (the full-length rule's cost)."""
        return self.layer_bytes_per_token * (self.full_length_layers + self.capped_layers)

    @property
    def kv_cache_bytes(self) -> int:
        return max(0, int(self.kv_cache_gib * GIB))

    @property
    def null_block_bytes(self) -> int:
        """The block vLLM's block pool holds back. vLLM charges the largest KV-cache group's block; one block of
        every layer of the stage is that or more (the same for a uniform model)."""
        return self.layer_bytes_per_token * self.block_size * (self.full_length_layers + self.capped_layers)

    def bytes_for(self, length: int) -> int:
        """KV bytes one sequence of ``length`` tokens needs on one GPU."""
        padded = -(-length // self.block_size) * self.block_size
        capped = min(padded, self.capped_tokens)
        return self.layer_bytes_per_token * (self.full_length_layers * padded + self.capped_layers * capped)

    @property
    def sequence_gib(self) -> float:
        """KV GiB of one sequence at the effective max_model_len."""
        return self.bytes_for(self.max_model_len) / GIB

    def fits_in(self, kv_bytes: int) -> int:
        """Largest max_model_len whose one request fits in ``kv_bytes`` (less the null block), capped by the
        model's maximum; a multiple of the block size, like vLLM's own estimate at its boundary."""
        available = kv_bytes - self.null_block_bytes
        per_full = self.layer_bytes_per_token * (self.full_length_layers + self.capped_layers)
        if available <= 0 or per_full <= 0:
            return 0
        length = available // (per_full * self.block_size) * self.block_size
        if length > self.capped_tokens and self.capped_layers:
            # Past the cap the capped layers cost a constant; only the full-length layers grow.
            rest = available - self.layer_bytes_per_token * self.capped_layers * self.capped_tokens
            per_growing = self.layer_bytes_per_token * self.full_length_layers
            length = (
                self.model_max_len if per_growing == 0 else rest // (per_growing * self.block_size) * self.block_size
            )
        return min(length, self.model_max_len)

    @property
    def max_model_len_that_fits(self) -> int:
        """Largest max_model_len that fits at the pessimistic end of the band: the value the planner suggests."""
        return self.fits_in(self.kv_cache_bytes)

    @property
    def max_model_len_that_may_fit(self) -> int:
        """Largest max_model_len that fits at the optimistic end of the band: beyond it the spec is refused."""
        return self.fits_in(max(0, int(self.kv_cache_gib_optimistic * GIB)))

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
            reserve_band_gib=round(self.band_gib, 2),
            kv_cache_gib=round(self.kv_cache_gib, 2),
            kv_cache_rule=self.kv_rule,
            kv_bytes_per_token=self.kv_bytes_per_token,
            kv_cache_tokens=self.kv_cache_tokens,
            max_model_len_that_fits=self.max_model_len_that_fits,
            max_model_len_that_may_fit=self.max_model_len_that_may_fit,
            max_concurrent_full_length_sequences=round(self.max_concurrent_sequences, 2),
        )


def _stage_plan(
    model: ModelFacts,
    gpu: GpuFacts,
    settings: EngineSettings,
    knowledge: Knowledge,
    layers: range,
    first: bool,
    last: bool,
) -> MemoryBreakdown:
    constants = knowledge.memory
    tp = settings.tensor_parallel_size
    gpus = tp * settings.pipeline_parallel_size
    weights = stage_weights(model, layers, first, last, tp, settings.quantization)
    # The drafter runs beside the last stage: its weights, and its attention layer's full-length KV cache.
    eagle = last and settings.speculative_method in EAGLE_METHODS
    if eagle:
        weights += eagle_draft_bytes(model, tp)
    # vLLM's rotary embedding caches cos/sin for every position up to max_position_embeddings, in the model dtype,
    # on every GPU (rotary_embedding.py `cos_sin_cache`): 2.5 GiB for Scout's 10M positions.
    rope_cache = model.max_position_embeddings * model.head_dim * model.dtype_bytes
    reserve = constants.fixed_gib + (constants.multi_gpu_gib if gpus > 1 else 0.0) + rope_cache / GIB
    band = constants.band_gib + (constants.multi_gpu_band_gib if gpus > 1 else 0.0)
    kv_dtype_bytes = model.dtype_bytes if settings.kv_cache_dtype == "auto" else 1
    layer_bytes = 2 * max(1, model.num_kv_heads // tp) * model.head_dim * kv_dtype_bytes
    target_global = int(model.layer_sum("global layers", layers, None, lambda index: model.is_global_layer(index)))
    local = len(layers) - target_global
    global_ = target_global + (1 if eagle else 0)
    if settings.hybrid_kv_cache and model.attention_chunk_size:
        rule = HYBRID
        full_layers, capped_layers = global_, local
        cap = model.attention_chunk_size + settings.max_in_flight_tokens
        capped_tokens = -(-cap // constants.block_size) * constants.block_size
    else:
        rule = FULL_LENGTH
        full_layers, capped_layers, capped_tokens = global_ + local, 0, 0
    return MemoryBreakdown(
        gpu_memory_gib=gpu.memory_gib,
        usable_gib=gpu.memory_gib * settings.gpu_memory_utilization,
        weights_gib=weights / GIB,
        reserve_gib=reserve,
        band_gib=band,
        kv_rule=rule,
        layer_bytes_per_token=layer_bytes,
        full_length_layers=full_layers,
        capped_layers=capped_layers,
        capped_tokens=capped_tokens,
        block_size=constants.block_size,
        max_model_len=settings.max_model_len,
        model_max_len=model.derived_max_model_len(),
    )


def plan_memory(model: ModelFacts, gpu: GpuFacts, settings: EngineSettings, knowledge: Knowledge) -> MemoryBreakdown:
    """The per-GPU plan of one replica at its binding pipeline stage (pure arithmetic; validated inputs only)."""
    stages = pp_partition(model.num_layers, min(settings.pipeline_parallel_size, model.num_layers))
    plans = [
        _stage_plan(model, gpu, settings, knowledge, layers, index == 0, index == len(stages) - 1)
        for index, layers in enumerate(stages)
    ]
    # The stage that fits the shortest context binds; among equals, the one with the least KV memory.
    return min(plans, key=lambda plan: (plan.max_model_len_that_fits, plan.kv_cache_gib))
