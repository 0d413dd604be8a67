"""Model facts: the config.json subset the planner needs, and the parameter breakdown derived from it."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from llama_operator.knowledge.describe import describe

# config.json keys we read; everything else in a user's inline config is ignored.
_REQUIRED_INT = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "max_position_embeddings")
MAX_REASONABLE = 1 << 40  # guards arithmetic against absurd inline values


class ModelConfigError(ValueError):
    """An inline or catalog config.json subset the planner cannot use; ``key`` names the offending key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True, slots=True)
class Quantization:
    """How a quantized checkpoint stores its weights: which modules at how many bytes per parameter."""

    method: str
    weight_bytes: float
    # routed_experts | mlp_except_first_last | all_linear
    modules: str


@dataclass(frozen=True, slots=True)
class ModelFacts:
    """What the planner knows about one model; counts are for the language model unless named otherwise."""

    name: str
    architecture: str
    hidden_size: int
    num_layers: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    intermediate_size_mlp: int
    num_experts: int
    interleave_moe_layer_step: int
    vocab_size: int
    max_position_embeddings: int
    rope_scaling: Mapping[str, Any] | None
    attention_chunk_size: int | None
    nope_layer_interval: int | None
    tie_word_embeddings: bool
    torch_dtype: str
    parameters: int
    # Explicit NoPE (global-attention) layer count from config.json `no_rope_layers`; None: derive from the interval.
    nope_layers: int | None = None
    vision_parameters: int = 0
    # The vision tower's dimensions vLLM splits over TP (config.json vision_config); 0 without a vision tower.
    vision_hidden_size: int = 0
    vision_attention_heads: int = 0
    vision_intermediate_size: int = 0
    quantization: Quantization | None = None
    hf_ids: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    _breakdown: dict[str, int] = field(default_factory=dict, compare=False, repr=False)
    # layer_sum's memo. Not an init field: dataclasses.replace gives the copy an empty one.
    _layer_sums: dict[tuple[str, int, int, int, str | None], float] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 1

    @property
    def dtype_bytes(self) -> int:
        """Bytes per element of the unquantized weights and of an ``auto`` KV cache."""
        return 4 if self.torch_dtype in ("float32", "float") else 2

    @property
    def has_chunked_attention(self) -> bool:
        return self.attention_chunk_size is not None and self.attention_chunk_size > 0

    @property
    def global_layers(self) -> int:
        """Layers attending over the whole sequence. With chunked attention (Llama-4) only the NoPE layers do:
        vLLM's Llama4Attention uses chunked local attention where the layer has RoPE and a chunk size is set."""
        if not self.has_chunked_attention:
            return self.num_layers
        if self.nope_layers is not None:
            return self.nope_layers
        interval = self.nope_layer_interval or 4
        # HF Llama4TextConfig: layer i is NoPE when (i + 1) % no_rope_layer_interval == 0.
        return self.num_layers // interval

    @property
    def chunked_local_layers(self) -> int:
        """Layers attending only within their attention chunk."""
        return self.num_layers - self.global_layers

    def is_global_layer(self, index: int) -> bool:
        """Whether decoder layer ``index`` attends over the whole sequence (vLLM's Llama4Attention: NoPE layers, or
        every layer without a chunk size). Explicit no_rope_layers counts are spread by the interval rule."""
        if not self.has_chunked_attention:
            return True
        interval = self.nope_layer_interval or 4
        if self.nope_layers is not None and self.nope_layers != self.num_layers // interval:
            interval = max(1, self.num_layers // max(1, self.nope_layers))
        return (index + 1) % interval == 0

    def layer_parameters(self, index: int) -> tuple[int, int, int]:
        """(attention, MLP other than routed experts, routed experts) parameters of decoder layer ``index``."""
        h = self.hidden_size
        attention = 2 * h * self.num_attention_heads * self.head_dim + 2 * h * self.num_kv_heads * self.head_dim
        if _moe_layer(self, index):
            # shared expert + router; the routed experts apart
            return (
                attention,
                3 * h * self.intermediate_size + h * self.num_experts,
                self.num_experts * 3 * h * (self.intermediate_size),
            )
        width = self.intermediate_size_mlp if self.is_moe else self.intermediate_size
        return attention, 3 * h * width, 0

    def layer_sum(self, what: str, layers: range, online: str | None, per_layer: Callable[[int], float]) -> float:
        """``sum(per_layer(index) for index in layers)``, remembered per instance under (``what``, ``layers``,
        ``online``), which must say all that ``per_layer`` depends on besides this model. A catalog model is planned
        for every LlamaDeployment naming it, and the per-layer loops of planning.memory were a fifth of validate()
        (issue #21)."""
        key = (what, layers.start, layers.stop, layers.step, online)
        total = self._layer_sums.get(key)
        if total is None:
            total = self._layer_sums[key] = sum(per_layer(index) for index in layers)
        return total

    def breakdown(self) -> dict[str, int]:
        """Parameter counts by kind (embeddings, attention, routed experts, other MLP), cached per instance."""
        if not self._breakdown:
            self._breakdown.update(_parameter_breakdown(self))
        return self._breakdown

    def derived_max_model_len(self) -> int:
        """vLLM's derived maximum: max_position_embeddings, scaled by rope factor for the scaling types vLLM scales.

        vLLM (`_get_and_verify_max_len`) multiplies by the rope factor except for "su", "longrope" and "llama3";
        for "yarn" it starts from original_max_position_embeddings.
        """
        scaling = self.rope_scaling
        if not scaling or "factor" not in scaling:
            return self.max_position_embeddings
        rope_type = str(scaling.get("rope_type", scaling.get("type", "")))
        if rope_type in ("su", "longrope", "llama3"):
            return self.max_position_embeddings
        try:
            factor = float(scaling["factor"])
            base = int(scaling.get("original_max_position_embeddings", self.max_position_embeddings))
        except (TypeError, ValueError, OverflowError):
            return self.max_position_embeddings
        if rope_type != "yarn":
            base = self.max_position_embeddings
        if not 0 < factor < 1e6 or not 0 < base < MAX_REASONABLE:
            return self.max_position_embeddings
        return int(base * factor)


def _moe_layer(facts: ModelFacts, index: int) -> bool:
    # HF/vLLM Llama-4: layer i is MoE when (i + 1) % interleave_moe_layer_step == 0.
    return facts.is_moe and (index + 1) % max(1, facts.interleave_moe_layer_step) == 0


def _parameter_breakdown(facts: ModelFacts) -> dict[str, int]:
    embeddings = facts.vocab_size * facts.hidden_size * (1 if facts.tie_word_embeddings else 2)
    layers = [facts.layer_parameters(index) for index in range(facts.num_layers)]
    attention = sum(layer[0] for layer in layers)
    mlp_per_layer = [layer[1] for layer in layers]
    routed = sum(layer[2] for layer in layers)
    return {
        "embeddings": embeddings,
        "attention": attention,
        "routed_experts": routed,
        "mlp": sum(mlp_per_layer),
        "mlp_first_last": mlp_per_layer[0] + mlp_per_layer[-1] if mlp_per_layer else 0,
        "text_total": embeddings + attention + routed + sum(mlp_per_layer),
    }


def _nope_layers(text: Mapping[str, Any], num_layers: int) -> int | None:
    flags = text.get("no_rope_layers")
    if flags is None:
        return None
    if not isinstance(flags, list) or len(flags) != num_layers or not all(flag in (0, 1) for flag in flags):
        raise ModelConfigError("no_rope_layers", f"no_rope_layers must be a list of {num_layers} zeros and ones")
    # 1 = the layer uses RoPE (chunked local attention), 0 = NoPE (global attention).
    return sum(1 for flag in flags if flag == 0)


def _int(config: Mapping[str, Any], key: str, default: int | None = None) -> int:
    value = config.get(key, default)
    if value is None:
        raise ModelConfigError(key, f"config.json key {key!r} is required")
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (isinstance(value, float) and not math.isfinite(value))
        or value != int(value)
    ):
        raise ModelConfigError(key, f"config.json key {key!r} must be an integer, got {describe(value)}")
    if not 0 < int(value) < MAX_REASONABLE:
        raise ModelConfigError(key, f"config.json key {key!r} must be positive, got {describe(value)}")
    return int(value)


def _text(value: Any, key: str, default: str) -> str:
    # str() of any value would do, but not of a 5,000-deep list (RecursionError) or a megabyte one.
    if value is None:
        return default
    if not isinstance(value, str):
        raise ModelConfigError(key, f"config.json key {key!r} must be a string, got {describe(value)}")
    return value


def model_facts_from_config(
    config: Mapping[str, Any],
    *,
    name: str,
    parameters: float | None = None,
    vision_parameters: float = 0,
    quantization: Quantization | None = None,
    hf_ids: tuple[str, ...] = (),
    aliases: tuple[str, ...] = (),
    sources: tuple[str, ...] = (),
) -> ModelFacts:
    """Build facts from a config.json (or a subset of one). Llama-4 nests its language model in ``text_config``.

    Raises ``ModelConfigError`` naming the key when a required value is missing or unusable.
    """
    if not isinstance(config, Mapping):
        raise ModelConfigError("", "the model config must be a mapping of config.json keys")
    text = config.get("text_config", config)
    if not isinstance(text, Mapping):
        raise ModelConfigError("text_config", "text_config must be a mapping")
    architectures = config.get("architectures")
    if isinstance(architectures, list) and architectures and isinstance(architectures[0], str):
        architecture = architectures[0]
    else:
        architecture = _text(config.get("architecture", text.get("architecture")), "architecture", "LlamaForCausalLM")
    values = {key: _int(text, key) for key in _REQUIRED_INT}
    heads = values["num_attention_heads"]
    kv_heads = _int(text, "num_key_value_heads", heads)
    head_dim = _int(text, "head_dim", max(1, values["hidden_size"] // heads))
    intermediate = _int(text, "intermediate_size", 4 * values["hidden_size"])
    experts = _int(text, "num_local_experts", 1)
    chunk = text.get("attention_chunk_size")
    chunk_size = _int(text, "attention_chunk_size") if chunk is not None else None
    nope = text.get("nope_layer_interval", text.get("no_rope_layer_interval"))
    rope_scaling = text.get("rope_scaling")
    if rope_scaling is not None and not isinstance(rope_scaling, Mapping):
        raise ModelConfigError("rope_scaling", "rope_scaling must be a mapping or null")
    dtype = _text(text.get("torch_dtype", config.get("torch_dtype")), "torch_dtype", "bfloat16")
    vision = config.get("vision_config") or {}
    if not isinstance(vision, Mapping):
        raise ModelConfigError("vision_config", "vision_config must be a mapping")
    facts = ModelFacts(
        name=name,
        architecture=architecture,
        hidden_size=values["hidden_size"],
        num_layers=values["num_hidden_layers"],
        num_attention_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate_size=intermediate,
        intermediate_size_mlp=_int(text, "intermediate_size_mlp", intermediate),
        num_experts=experts,
        interleave_moe_layer_step=_int(text, "interleave_moe_layer_step", 1),
        vocab_size=values["vocab_size"],
        max_position_embeddings=values["max_position_embeddings"],
        rope_scaling=rope_scaling,
        attention_chunk_size=chunk_size,
        nope_layer_interval=_int(
            text, "nope_layer_interval" if "nope_layer_interval" in text else "no_rope_layer_interval"
        )
        if nope is not None
        else None,
        nope_layers=_nope_layers(text, values["num_hidden_layers"]),
        tie_word_embeddings=bool(text.get("tie_word_embeddings", config.get("tie_word_embeddings", False))),
        torch_dtype=dtype,
        parameters=0,
        vision_parameters=int(vision_parameters),
        vision_hidden_size=_int(vision, "hidden_size") if "hidden_size" in vision else 0,
        vision_attention_heads=_int(vision, "num_attention_heads") if "num_attention_heads" in vision else 0,
        vision_intermediate_size=_int(vision, "intermediate_size") if "intermediate_size" in vision else 0,
        quantization=quantization,
        hf_ids=hf_ids,
        aliases=aliases,
        sources=sources,
    )
    total = int(parameters) if parameters else facts.breakdown()["text_total"] + int(vision_parameters)
    return _with_parameters(facts, total)


def _with_parameters(facts: ModelFacts, total: int) -> ModelFacts:
    # dataclasses.replace would drop the cached breakdown; rebuild explicitly.
    from dataclasses import replace

    return replace(facts, parameters=total, _breakdown={})
