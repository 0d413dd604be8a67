"""The planner's copies of vLLM's rules, each against the vLLM behaviour it mirrors (named in planning/memory.py and
planning/engine.py). tests/engine/test_planner_oracle.py checks the same figures against vLLM's own code."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from llama_operator.api import LlamaDeployment
from llama_operator.knowledge import load_knowledge
from llama_operator.planning import validate
from llama_operator.planning.engine import EngineSettings, engine_settings
from llama_operator.planning.memory import MemoryBreakdown, plan_memory, pp_partition
from llama_operator.planning.validate import ValidationResult

KNOWLEDGE = load_knowledge()
SCOUT = "meta-llama/Llama-4-Scout-17B-16E-Instruct"
H100 = "NVIDIA-H100-80GB-HBM3"
BASE: dict[str, Any] = {
    "apiVersion": "llamaops.dev/v1alpha1",
    "kind": "LlamaDeployment",
    "metadata": {"name": "rules"},
    "spec": {
        "model": {"name": SCOUT},
        "engine": {"vllmVersion": "0.32.0", "tensorParallelSize": 8, "maxModelLen": 1048576},
        "resources": {"gpuProduct": H100},
    },
}


def document(model: str = SCOUT, gpu: str = H100, **engine: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    doc["spec"]["model"]["name"] = model
    doc["spec"]["resources"]["gpuProduct"] = gpu
    doc["spec"]["engine"].update(engine)
    return doc


def settings_and_plan(doc: dict[str, Any]) -> tuple[EngineSettings, MemoryBreakdown]:
    spec = LlamaDeployment.model_validate(doc).spec
    model = KNOWLEDGE.model(spec.model.name)
    gpu = KNOWLEDGE.gpu(spec.resources.gpu_product)
    assert model is not None
    assert gpu is not None
    settings = engine_settings(spec, model, gpu, KNOWLEDGE)
    return settings, plan_memory(model, gpu, settings, KNOWLEDGE)


@pytest.mark.parametrize(
    ("version", "pp", "nodes", "extra", "batches"),
    [
        ("0.32.0", 1, 1, [], 2),  # async scheduling, on by default: two batches in flight
        ("0.32.0", 2, 1, [], 3),  # Model Runner V2 keeps async scheduling with PP: PP + 1
        ("0.32.0", 2, 2, [], 3),  # a multi-node replica's Ray executor (RayExecutorV2) keeps async scheduling
        ("0.32.0", 1, 1, ["--no-async-scheduling"], 1),
        ("0.26.0", 1, 1, [], 2),  # first release with max_in_flight_tokens
        ("0.25.0", 1, 1, [], 1),  # one batch: chunk + max_num_batched_tokens
        ("0.14.0", 1, 1, [], 1),
    ],
)
def test_chunked_local_cap_counts_the_batches_in_flight(
    version: str, pp: int, nodes: int, extra: list[str], batches: int
) -> None:
    doc = document(vllmVersion=version, pipelineParallelSize=pp, extraArgs=extra)
    if nodes > 1:
        doc["spec"]["resources"]["gpusPerNode"] = 8 * pp // nodes
    settings, plan = settings_and_plan(doc)
    assert settings.max_concurrent_batches == batches
    assert settings.max_num_batched_tokens == 8192  # H100: >= 70 GiB and not an A100
    assert plan.kv_rule == "HybridChunkedLocal"
    assert plan.capped_tokens == 8192 + batches * 8192


def test_before_the_hybrid_manager_every_layer_keeps_the_full_length() -> None:
    _, plan = settings_and_plan(document(vllmVersion="0.13.0"))
    assert (plan.kv_rule, plan.capped_layers, plan.full_length_layers) == ("FullLength", 0, 48)


@pytest.mark.parametrize(
    "extra",
    [
        ["--speculative-config", json.dumps({"method": "eagle3", "model": "a/b", "num_speculative_tokens": 3})],
        ["--kv-transfer-config", json.dumps({"kv_connector": "SomeConnector", "kv_role": "kv_both"})],
        ["--disable-hybrid-kv-cache-manager"],
    ],
)
def test_the_hybrid_manager_is_off_where_vllm_turns_it_off(extra: list[str]) -> None:
    _, plan = settings_and_plan(document(extraArgs=extra))
    assert plan.kv_rule == "FullLength"


def test_an_eagle_draft_adds_its_weights_and_a_full_length_layer() -> None:
    spec = ["--speculative-config", json.dumps({"method": "eagle", "model": "a/b", "num_speculative_tokens": 3})]
    _, plain = settings_and_plan(document(vllmVersion="0.13.0"))
    _, eagle = settings_and_plan(document(vllmVersion="0.13.0", extraArgs=spec))
    assert eagle.full_length_layers == plain.full_length_layers + 1
    assert eagle.weights_gib > plain.weights_gib
    assert eagle.max_model_len_that_fits < plain.max_model_len_that_fits


def test_forcing_the_hybrid_manager_with_eagle_is_refused_as_vllm_refuses_it() -> None:
    spec = json.dumps({"method": "eagle3", "model": "a/b", "num_speculative_tokens": 3})
    result = validate(document(extraArgs=["--speculative-config", spec, "--no-disable-hybrid-kv-cache-manager"]))
    assert "hybrid_kv_cache_manager_unsupported" in {finding.code for finding in result.errors}


@pytest.mark.parametrize(
    ("gpu", "version", "batched"),
    [
        ("NVIDIA-B200", "0.32.0", 16384),  # >= 160 GiB
        ("NVIDIA-B200", "0.26.0", 8192),  # before the 160 GiB tier
        ("NVIDIA-H200", "0.32.0", 8192),  # 140 GiB
        ("NVIDIA-A100-SXM4-80GB", "0.32.0", 2048),  # >= 70 GiB, but an A100
        ("NVIDIA-L40S", "0.32.0", 2048),
    ],
)
def test_max_num_batched_tokens_default_by_gpu_and_version(gpu: str, version: str, batched: int) -> None:
    settings, _ = settings_and_plan(document(gpu=gpu, vllmVersion=version))
    assert settings.max_num_batched_tokens == batched


def test_an_explicit_max_num_batched_tokens_wins() -> None:
    settings, plan = settings_and_plan(document(extraArgs=["--max-num-batched-tokens", "4096"]))
    assert settings.max_num_batched_tokens == 4096
    assert plan.capped_tokens == 8192 + 2 * 4096


def test_the_null_block_is_held_back() -> None:
    """The suggestion fits the KV budget with one block held back, and the next block would not."""
    _, plan = settings_and_plan(document(vllmVersion="0.8.3", maxModelLen=8192))
    fits = plan.max_model_len_that_fits
    assert plan.bytes_for(fits) + plan.null_block_bytes <= plan.kv_cache_bytes
    assert plan.bytes_for(fits + plan.block_size) + plan.null_block_bytes > plan.kv_cache_bytes
    assert plan.null_block_bytes == plan.kv_bytes_per_token * plan.block_size


def test_weights_come_from_the_config_not_the_published_total() -> None:
    model = KNOWLEDGE.model("meta-llama/Llama-4-Maverick-17B-128E-Instruct")
    assert model is not None
    total = model.breakdown()["text_total"] + model.vision_parameters
    assert 401.0e9 < total < 402.0e9  # the model card's "400B" understates it
    _, plan = settings_and_plan(document(model="meta-llama/Llama-4-Maverick-17B-128E-Instruct", gpu="NVIDIA-H200"))
    assert plan.weights_gib == pytest.approx(total * 2 / 8 / 2**30, rel=1e-6)


def test_pipeline_stages_split_like_vllm_and_the_first_stage_binds() -> None:
    assert [len(stage) for stage in pp_partition(48, 5)] == [9, 10, 10, 10, 9]  # remainder before the last
    assert [len(stage) for stage in pp_partition(48, 2)] == [24, 24]
    # PP 2: the first stage holds the embeddings and the vision tower, so it has the least KV memory.
    _, plan = settings_and_plan(document(tensorParallelSize=4, pipelineParallelSize=2))
    model = KNOWLEDGE.model(SCOUT)
    assert model is not None
    layers = sum(model.layer_parameters(index)[0] + sum(model.layer_parameters(index)[1:]) for index in range(24))
    first = (layers + model.vocab_size * model.hidden_size + model.vision_parameters) * 2 / 4 / 2**30
    assert plan.weights_gib == pytest.approx(first, rel=1e-6)


def test_fbgemm_checkpoints_are_refused_by_current_vllm_unless_allowed() -> None:
    fp8 = "meta-llama/Llama-3.1-405B-Instruct-FP8"
    refused = validate(document(model=fp8, maxModelLen=8192))
    assert "deprecated_quantization_refused" in {finding.code for finding in refused.errors}
    allowed = validate(document(model=fp8, maxModelLen=8192, extraArgs=["--allow-deprecated-quantization"]))
    assert "deprecated_quantization_refused" not in {finding.code for finding in allowed.findings}
    older = validate(document(model=fp8, maxModelLen=8192, vllmVersion="0.8.3"))
    assert "deprecated_quantization_refused" not in {finding.code for finding in older.findings}


def _memory_finding(result: ValidationResult) -> tuple[str, str]:
    codes = ("memory_plan", "max_model_len_may_not_fit", "max_model_len_does_not_fit")
    found = next(finding for finding in result.findings if finding.code in codes)
    return found.code, found.severity


def test_the_band_decides_refuse_warn_or_admit() -> None:
    _, plan = settings_and_plan(document(vllmVersion="0.8.3"))
    sure, maybe = plan.max_model_len_that_fits, plan.max_model_len_that_may_fit
    assert sure < maybe
    assert _memory_finding(validate(document(vllmVersion="0.8.3", maxModelLen=sure))) == ("memory_plan", "info")
    between = validate(document(vllmVersion="0.8.3", maxModelLen=(sure + maybe) // 2 // 16 * 16))
    assert _memory_finding(between) == ("max_model_len_may_not_fit", "warning")
    warning = next(f for f in between.findings if f.code == "max_model_len_may_not_fit")
    assert f"+/- {plan.band_gib:.1f} GiB" in warning.message
    beyond = validate(document(vllmVersion="0.8.3", maxModelLen=maybe + 16))
    assert _memory_finding(beyond) == ("max_model_len_does_not_fit", "error")
    # The refusal suggests the value that fits at the pessimistic end.
    assert f"maxModelLen to {sure} or less" in next(f.fix for f in beyond.errors)
