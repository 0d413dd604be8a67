"""The config.json a catalog model's checkpoint would carry, written from the catalog's facts (models.yaml), so that
vLLM's ModelConfig can read the model offline: no hub access, no weights.

What the catalog does not hold is filled in from the published checkpoints (Llama-4's vision tower) or left to
transformers' defaults (RoPE theta, token ids, norms: nothing the memory plan or vLLM's checks depend on).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CATALOG = ROOT / "operator" / "llama_operator" / "knowledge" / "data" / "models.yaml"

# The vision tower of every Llama-4 checkpoint (Scout and Maverick alike), from the published config.json
# (huggingface.co/meta-llama/Llama-4-Scout-17B-16E-Instruct/blob/main/config.json, "vision_config"); the catalog
# only names its parameter count.
LLAMA4_VISION = {
    "model_type": "llama4_vision_model",
    "hidden_size": 1408,
    "image_size": 336,
    "intermediate_size": 5632,
    "num_attention_heads": 16,
    "num_channels": 3,
    "num_hidden_layers": 34,
    "patch_size": 14,
    "pixel_shuffle_ratio": 0.5,
    "projector_input_dim": 4096,
    "projector_output_dim": 4096,
    "vision_output_dim": 4096,
    "vision_feature_layer": -1,
    "vision_feature_select_strategy": "default",
    "multi_modal_projector_bias": False,
    "norm_eps": 1e-05,
    "rope_theta": 10000,
    "hidden_act": "gelu",
}


class NotExpressible(ValueError):
    """A catalog entry the oracle cannot write a config.json for (a harness gap, not a verdict of vLLM's)."""


# Catalog keys that are not config.json keys under the same name.
RENAMED = {"nope_layer_interval": "no_rope_layer_interval"}
NOT_CONFIG = {"architecture"}


@cache
def catalog() -> dict[str, dict[str, Any]]:
    """{catalog name: models.yaml entry} (read once; callers copy what they change)."""
    entries = yaml.safe_load(CATALOG.read_text(encoding="utf-8"))["models"]
    return {str(entry["name"]): entry for entry in entries}


def _text_config(facts: dict[str, Any]) -> dict[str, Any]:
    text = {RENAMED.get(key, key): value for key, value in facts.items() if key not in NOT_CONFIG}
    text.setdefault("architectures", [facts["architecture"]])
    return text


def _not_converted(entry: dict[str, Any], text: dict[str, Any], llama4: bool) -> list[str]:
    """fbgemm_fp8's modules_to_not_convert (checkpoint names) for the catalog's ``quantization.modules``: every
    linear layer the checkpoint keeps 16-bit."""
    modules = entry["quantization"]["modules"]
    layers = int(text["num_hidden_layers"])
    base = "language_model.model" if llama4 else "model"
    keep = [f"{base}.layers.{i}.self_attn.{p}" for i in range(layers) for p in ("q_proj", "k_proj", "v_proj", "o_proj")]
    if modules == "routed_experts":
        step = int(text.get("interleave_moe_layer_step", 1))
        for i in range(layers):
            if (i + 1) % step == 0:
                shared = ("shared_expert.gate_proj", "shared_expert.up_proj", "shared_expert.down_proj", "router")
                keep += [f"{base}.layers.{i}.feed_forward.{p}" for p in shared]
            else:
                keep += [f"{base}.layers.{i}.feed_forward.{p}" for p in ("gate_proj", "up_proj", "down_proj")]
    elif modules == "mlp_except_first_last":
        mlp = "feed_forward" if llama4 else "mlp"
        keep += [f"{base}.layers.{i}.{mlp}.{p}" for i in (0, layers - 1) for p in ("gate_proj", "up_proj", "down_proj")]
    elif modules != "all_linear":
        raise NotExpressible(f"{entry['name']}: quantization.modules {modules!r} is not known to the oracle")
    lm_head = "language_model.lm_head" if llama4 else "lm_head"
    return [*keep, lm_head, *(["vision_model", "multi_modal_projector"] if llama4 else [])]


def _quantization_config(entry: dict[str, Any], text: dict[str, Any], llama4: bool) -> dict[str, Any] | None:
    quant = entry.get("quantization")
    if not quant:
        return None
    if "config" in quant:
        # The checkpoint's own quantization_config, when the catalog carries it.
        return dict(quant["config"])
    method = quant["method"]
    if method == "fbgemm_fp8":
        return {
            "quant_method": method,
            "activation_scale_ub": 1200.0,
            "modules_to_not_convert": _not_converted(entry, text, llama4),
        }
    if method == "compressed-tensors" and quant["weight_bytes"] == 1:
        return _compressed_tensors_fp8(entry, llama4)
    raise NotExpressible(f"{entry['name']}: quantization method {method!r} has no config.json form in the oracle")


def _compressed_tensors_fp8(entry: dict[str, Any], llama4: bool) -> dict[str, Any]:
    """compressed-tensors FP8 as llm-compressor writes it for Meta's FP8 checkpoints: FP8 weights per output
    channel, FP8 activations quantized per token at runtime; ``ignore`` keeps what the catalog's
    ``quantization.modules`` leaves 16-bit (module names as vLLM matches them, regular expressions after "re:")."""
    modules = entry["quantization"]["modules"]
    if modules == "routed_experts":
        ignore = [
            "re:.*self_attn.*",
            "re:.*router.*",
            "re:.*shared_expert.*",
            r"re:.*feed_forward\.(gate|up|down)_proj$" if llama4 else r"re:.*mlp\.(gate|up|down)_proj$",
        ]
    elif modules == "all_linear":
        ignore = []
    else:
        raise NotExpressible(f"{entry['name']}: compressed-tensors with modules {modules!r} is not known to the oracle")
    ignore += ["re:.*lm_head", *(["re:.*vision_model.*", "re:.*multi_modal_projector.*"] if llama4 else [])]
    fp8 = {"num_bits": 8, "type": "float", "symmetric": True}
    return {
        "quant_method": "compressed-tensors",
        "format": "float-quantized",
        "quantization_status": "compressed",
        "config_groups": {
            "group_0": {
                "targets": ["Linear"],
                "weights": {**fp8, "strategy": "channel", "dynamic": False},
                "input_activations": {**fp8, "strategy": "token", "dynamic": True},
                "output_activations": None,
            }
        },
        "ignore": ignore,
        "kv_cache_scheme": None,
    }


def hf_config(entry: dict[str, Any]) -> dict[str, Any]:
    """config.json of one catalog entry: Llama-4 nests the language model in text_config beside its vision tower."""
    facts = dict(entry["config"])
    text = _text_config(facts)
    architecture = facts["architecture"]
    llama4 = architecture.startswith("Llama4")
    if llama4:
        text.pop("architectures")
        text["model_type"] = "llama4_text"
        config: dict[str, Any] = {
            "architectures": [architecture],
            "model_type": "llama4",
            "text_config": text,
            "vision_config": dict(facts.get("vision_config", LLAMA4_VISION)),
            "tie_word_embeddings": bool(facts.get("tie_word_embeddings", False)),
            "torch_dtype": facts.get("torch_dtype", "bfloat16"),
        }
        text.pop("vision_config", None)
    else:
        config = {**text, "model_type": "llama"}
    quantization = _quantization_config(entry, text, llama4)
    if quantization is not None:
        config["quantization_config"] = quantization
    return config


def eagle3_head_config(entry: dict[str, Any]) -> dict[str, Any]:
    """An EAGLE-3 draft head for the catalog model, of the shape published heads have (e.g.
    yuhuili/EAGLE3-LLaMA3.1-Instruct-8B): one Llama decoder layer with the target's attention shape and a dense MLP,
    over the target's vocabulary."""
    facts = entry["config"]
    width = facts.get("intermediate_size_mlp", facts["intermediate_size"])
    return {
        "architectures": ["LlamaForCausalLMEagle3"],
        "model_type": "llama",
        "hidden_size": facts["hidden_size"],
        "num_hidden_layers": 1,
        "num_attention_heads": facts["num_attention_heads"],
        "num_key_value_heads": facts["num_key_value_heads"],
        "head_dim": facts.get("head_dim", facts["hidden_size"] // facts["num_attention_heads"]),
        "intermediate_size": width,
        "vocab_size": facts["vocab_size"],
        "draft_vocab_size": facts["vocab_size"],
        "max_position_embeddings": facts["max_position_embeddings"],
        "tie_word_embeddings": False,
        "torch_dtype": facts.get("torch_dtype", "bfloat16"),
    }


def write(config: dict[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
    return directory
