"""Which model and GPU a spec names: catalog lookups plus the inline config.json override (GPUs: planning.gpus)."""

from __future__ import annotations

from dataclasses import dataclass

from llama_operator.api import LlamaDeploymentSpec
from llama_operator.knowledge import Knowledge, ModelConfigError, ModelFacts, model_facts_from_config
from llama_operator.knowledge.gpus import GpuFacts
from llama_operator.planning.findings import Finding
from llama_operator.planning.gpus import resolve_gpu


@dataclass(frozen=True, slots=True)
class Resolved:
    model: ModelFacts | None
    gpu: GpuFacts | None
    findings: tuple[Finding, ...]


def _merge_override(base: ModelFacts | None, spec: LlamaDeploymentSpec) -> ModelFacts:
    inline = spec.model.config.inline if spec.model.config else None
    assert inline is not None
    if base is None:
        return model_facts_from_config(inline, name=spec.model.name)
    # Override on top of the catalog entry: flatten the catalog facts back into config.json keys.
    merged: dict[str, object] = {
        "architectures": [base.architecture],
        "hidden_size": base.hidden_size,
        "num_hidden_layers": base.num_layers,
        "num_attention_heads": base.num_attention_heads,
        "num_key_value_heads": base.num_kv_heads,
        "head_dim": base.head_dim,
        "intermediate_size": base.intermediate_size,
        "intermediate_size_mlp": base.intermediate_size_mlp,
        "num_local_experts": base.num_experts,
        "interleave_moe_layer_step": base.interleave_moe_layer_step,
        "vocab_size": base.vocab_size,
        "max_position_embeddings": base.max_position_embeddings,
        "rope_scaling": base.rope_scaling,
        "attention_chunk_size": base.attention_chunk_size,
        "tie_word_embeddings": base.tie_word_embeddings,
        "torch_dtype": base.torch_dtype,
    }
    text = inline.get("text_config", inline)
    if isinstance(text, dict):
        merged.update(text)
    if isinstance(inline.get("architectures"), list):
        merged["architectures"] = inline["architectures"]
    return model_facts_from_config(
        merged,
        name=base.name,
        vision_parameters=base.vision_parameters,
        quantization=base.quantization,
        hf_ids=base.hf_ids,
        aliases=base.aliases,
        sources=base.sources,
    )


def resolve(spec: LlamaDeploymentSpec, knowledge: Knowledge) -> Resolved:
    findings: list[Finding] = []
    catalog = knowledge.model(spec.model.name)
    config = spec.model.config
    model: ModelFacts | None = catalog
    if config is not None and config.inline is not None:
        try:
            model = _merge_override(catalog, spec)
        except ModelConfigError as error:
            key = f".{error.key}" if error.key else ""
            findings.append(
                Finding(
                    "invalid_model_config",
                    "error",
                    f"spec.model.config.inline{key}",
                    str(error),
                    "give the model's config.json values (see kubectl explain llama.spec.model.config.inline)",
                )
            )
            model = None
    elif catalog is None and config is not None and config.config_map_ref is not None:
        findings.append(
            Finding(
                "model_config_not_checked_offline",
                "info",
                "spec.model.config.configMapRef",
                f"model {spec.model.name!r} is described by ConfigMap {config.config_map_ref.name!r}, which offline "
                "validation cannot read: head, memory and known-issue checks run in the operator",
                "use spec.model.config.inline to have them checked here too",
            )
        )
    elif catalog is None:
        names = ", ".join(sorted(facts.name for facts in knowledge.models))
        findings.append(
            Finding(
                "unknown_model",
                "error",
                "spec.model.name",
                f"model {spec.model.name!r} is not in the catalog and no config.json is given",
                f"use a catalog model ({names}) or describe it in spec.model.config.inline",
            )
        )
    gpu, gpu_findings = resolve_gpu(spec, knowledge)
    return Resolved(model, gpu, (*findings, *gpu_findings))
