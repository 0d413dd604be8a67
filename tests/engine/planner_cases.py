"""The planner's side of the vLLM oracle (tests/engine/test_planner_oracle.py): every case, what the planner says.

Runs with the operator's venv, not the engine venv: ``.venv/bin/python tests/engine/planner_cases.py > cases.json``.
Prints ``{"vllm_version", "cases": {id: case}}``. A case is one LlamaDeployment the catalog lets us write, judged
through the planner's public API twice: as written (maxModelLen unset: the model's maximum), which gives the
planner's suggested maxModelLen (``MemoryBreakdown.max_model_len_that_fits``) and its KV budget; then with
maxModelLen set to that suggestion, which the planner must itself accept.

Cases:
* ``memory``: every catalog model x GPU x TP {1, 2, 4, 8} x PP {1, 2} x kvCacheDtype {auto, fp8}, and for models
  with chunked attention also with ``--disable-hybrid-kv-cache-manager``, for pre-quantized checkpoints also with
  ``--allow-deprecated-quantization`` (kv auto); an EAGLE-3 draft
  (``--speculative-config``) at PP 1 on every model, GPU and TP. Only TP that divides the attention heads and
  suits the KV heads (the other sizes are verdict cases), only layer counts that split evenly over PP (every
  stage then holds the same layers, so the binding stage's budget is every stage's), and only shapes the operator
  can place on the GPU's nodes (a TP group within a node, whole nodes).
* ``verdict``: TP {3, 5, 6, 10}, and on models of at most 28 layers PP at and past the layer count (layers,
  layers + 1), on one GPU: does the planner refuse what vLLM's config or model construction refuses, and accept
  what it accepts.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from llama_operator.api import LlamaDeployment
from llama_operator.knowledge import Knowledge, ModelFacts, load_knowledge
from llama_operator.knowledge.gpus import GpuFacts
from llama_operator.planning.engine import engine_settings
from llama_operator.planning.memory import MemoryBreakdown, plan_memory
from llama_operator.planning.parallelism import kv_heads_compatible, nodes_per_replica
from llama_operator.planning.resolve import resolve
from llama_operator.planning.validate import validate

VLLM_VERSION = "0.32.0"
MEMORY_TP = (1, 2, 4, 8)
MEMORY_PP = (1, 2)
VERDICT_TP = (3, 5, 6, 10)
KV_DTYPES = ("auto", "fp8")
# PP verdicts (a stage per layer, and one more stage than layers) on the shallow models only: every stage is built.
VERDICT_PP_MAX_LAYERS = 28
NO_HYBRID = "--disable-hybrid-kv-cache-manager"
ALLOW_DEPRECATED = "--allow-deprecated-quantization"
# The draft's "model" is left out: the oracle points it at an EAGLE-3 head it writes for the target.
EAGLE = {"method": "eagle3", "num_speculative_tokens": 3}
EAGLE_ARGS = ["--speculative-config", json.dumps(EAGLE, separators=(",", ":"))]
SETTINGS = {"default": [], "nohybrid": [NO_HYBRID], "eagle3": EAGLE_ARGS, "allowdeprecated": [ALLOW_DEPRECATED]}


def document(model: str, gpu: str, tp: int, pp: int, kv: str, extra: list[str], max_len: int | None) -> dict[str, Any]:
    engine: dict[str, Any] = {
        "vllmVersion": VLLM_VERSION,
        "tensorParallelSize": tp,
        "pipelineParallelSize": pp,
        "kvCacheDtype": kv,
        "extraArgs": extra,
    }
    if max_len is not None:
        engine["maxModelLen"] = max_len
    return {
        "apiVersion": "llamaops.dev/v1alpha1",
        "kind": "LlamaDeployment",
        "metadata": {"name": "oracle", "namespace": "default"},
        "spec": {"model": {"name": model}, "engine": engine, "resources": {"gpuProduct": gpu}},
    }


def breakdown(doc: dict[str, Any], knowledge: Knowledge) -> tuple[MemoryBreakdown, Any, int] | None:
    """The plan validate() makes of ``doc`` (its public parts wired as validate wires them), the engine settings
    and the nodes per replica; None when the spec names no known model and GPU."""
    spec = LlamaDeployment.model_validate(doc).spec
    resolved = resolve(spec, knowledge)
    if resolved.model is None or resolved.gpu is None:
        return None
    _, nodes = nodes_per_replica(spec, resolved.gpu)
    settings = engine_settings(spec, resolved.model, resolved.gpu, knowledge)
    return plan_memory(resolved.model, resolved.gpu, settings, knowledge), settings, nodes


def judged(doc: dict[str, Any], knowledge: Knowledge, issues: set[str]) -> dict[str, Any]:
    """validate()'s verdict: error codes (known-issue findings apart: they are runtime hazards, not vLLM's
    config checks) and the plan."""
    result = validate(doc, knowledge)
    errors = sorted(f.code for f in result.errors if f.code not in issues)
    hazards = sorted(f.code for f in result.findings if f.code in issues and f.severity == "error")
    out: dict[str, Any] = {"errors": errors, "issue_errors": hazards, "messages": {}}
    for finding in result.errors:
        out["messages"].setdefault(finding.code, finding.message)
    planned = breakdown(doc, knowledge)
    if planned is None or result.plan is None:
        out["plan"] = None
        return out
    plan, settings, nodes = planned
    if plan.max_model_len_that_fits != result.plan.max_model_len_that_fits:
        raise RuntimeError(
            f"planner_cases.py wires the planner differently from validate(): {plan.max_model_len_that_fits} vs "
            f"{result.plan.max_model_len_that_fits} for {doc['spec']}"
        )
    out["plan"] = {
        "suggested": plan.max_model_len_that_fits,
        "kv_cache_bytes": plan.kv_cache_bytes,
        "weights_gib": plan.weights_gib,
        "kv_rule": plan.kv_rule,
        "block_size": plan.block_size,
        "model_max_len": plan.model_max_len,
        "max_num_batched_tokens": settings.max_num_batched_tokens,
        "max_concurrent_batches": getattr(settings, "max_concurrent_batches", 1),
        "hybrid_kv_cache": settings.hybrid_kv_cache,
        "nodes": nodes,
    }
    return out


def case(model: ModelFacts, gpu: GpuFacts, tp: int, pp: int, kv: str, setting: str, kind: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "setting": setting,
        "model": model.name,
        "gpu": gpu.product,
        "gpu_memory_mib": gpu.memory_mib,
        "gpus_per_node": gpu.gpus_per_node,
        "tp": tp,
        "pp": pp,
        "kv_cache_dtype": kv,
        "extra_args": SETTINGS[setting],
    }


def case_id(entry: dict[str, Any]) -> str:
    where = entry["gpu"] if entry["kind"] == "memory" else "verdict"
    return f"{entry['model']}-{where}-tp{entry['tp']}-pp{entry['pp']}-kv{entry['kv_cache_dtype']}-{entry['setting']}"


def placed(tp: int, pp: int, per_node: int) -> bool:
    """Whether the operator can place TP x PP on this GPU's nodes (a TP group in one node, whole nodes)."""
    return tp <= per_node and (tp * pp <= per_node or tp * pp % per_node == 0)


def memory_shapes(model: ModelFacts, gpu: GpuFacts) -> list[tuple[int, int]]:
    return [
        (tp, pp)
        for tp in MEMORY_TP
        for pp in MEMORY_PP
        if model.num_attention_heads % tp == 0
        and kv_heads_compatible(model.num_kv_heads, tp)
        and model.num_layers % pp == 0
        and placed(tp, pp, gpu.gpus_per_node)
    ]


def settings_for(model: ModelFacts) -> list[tuple[str, str]]:
    """(kvCacheDtype, setting) pairs at every shape: the hybrid manager off where the model has chunked
    attention, and a pre-quantized checkpoint's method allowed when vLLM lists it as deprecated."""
    out = [(kv, "default") for kv in KV_DTYPES]
    if model.has_chunked_attention:
        out += [(kv, "nohybrid") for kv in KV_DTYPES]
    if model.quantization is not None:
        out.append(("auto", "allowdeprecated"))
    return out


def cases(knowledge: Knowledge) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for model in knowledge.models:
        for gpu in knowledge.gpus:
            for tp, pp in memory_shapes(model, gpu):
                out += [case(model, gpu, tp, pp, kv, name, "memory") for kv, name in settings_for(model)]
                if pp == 1:
                    out.append(case(model, gpu, tp, pp, "auto", "eagle3", "memory"))
        gpu = knowledge.gpus[0]
        out += [case(model, gpu, tp, 1, "auto", "default", "verdict") for tp in VERDICT_TP]
        if model.num_layers <= VERDICT_PP_MAX_LAYERS:
            layers = (model.num_layers, model.num_layers + 1)
            out += [case(model, gpu, 1, pp, "auto", "default", "verdict") for pp in layers]
    return out


def main() -> None:
    knowledge = load_knowledge()
    issues = {issue.id for issue in knowledge.issues}
    out: dict[str, Any] = {}
    for entry in cases(knowledge):
        ident = case_id(entry)
        args = (entry["model"], entry["gpu"], entry["tp"], entry["pp"], entry["kv_cache_dtype"], entry["extra_args"])
        entry["as_written"] = judged(document(*args, None), knowledge, issues)
        plan = entry["as_written"]["plan"]
        suggested = plan["suggested"] if plan else 0
        entry["at_suggestion"] = judged(document(*args, suggested), knowledge, issues) if suggested else None
        out[ident] = entry
    json.dump({"vllm_version": VLLM_VERSION, "cases": out}, sys.stdout)


if __name__ == "__main__":
    main()
