"""Findings of the planner: heads, placement, context, known vLLM issues, memory, extraArgs, effective args."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from llama_operator.planning import ValidationResult, validate

BASE: dict[str, Any] = {
    "apiVersion": "llamaops.dev/v1alpha1",
    "kind": "LlamaDeployment",
    "metadata": {"name": "scout", "namespace": "serving"},
    "spec": {
        "model": {"name": "meta-llama/Llama-4-Scout-17B-16E-Instruct"},
        "engine": {"vllmVersion": "0.8.3", "patched": False, "tensorParallelSize": 8, "maxModelLen": 1048576},
        "resources": {"gpuProduct": "NVIDIA-H100-80GB-HBM3"},
    },
}


def run(**engine: Any) -> ValidationResult:
    document = copy.deepcopy(BASE)
    document["spec"]["engine"].update(engine)
    return validate(document)


def codes(result: ValidationResult, severity: str | None = None) -> list[str]:
    return [finding.code for finding in result.findings if severity is None or finding.severity == severity]


def finding(result: ValidationResult, code: str) -> Any:
    return next(item for item in result.findings if item.code == code)


def test_base_spec_is_valid_with_a_memory_plan() -> None:
    result = run()
    assert result.valid, result.findings
    assert result.plan is not None
    assert result.plan.kv_cache_rule == "FullLength"
    assert result.effective is not None
    assert result.effective.gpus_per_replica == 8


def test_tp5_on_llama4_is_refused_for_kv_heads() -> None:
    result = run(tensorParallelSize=5)
    error = finding(result, "tp_incompatible_with_kv_heads")
    assert error.severity == "error"
    assert error.field == "spec.engine.tensorParallelSize"
    assert "8 KV" in error.message
    assert "40 attention heads divide" in error.message
    # vLLM 0.32 builds the vision tower first: its patch embedding is where loading fails first.
    assert "first at the vision tower's patch embedding" in error.message
    assert "'1408 is not divisible by 5'" in error.message
    assert error.fix.endswith("1, 2, 4, 8")
    assert not result.valid


def test_tp40_on_llama4_fails_at_the_vision_tower_not_the_heads() -> None:
    """40 divides the 40 attention heads and is a multiple of the 8 KV heads, but not of the vision tower's 1408."""
    document = copy.deepcopy(BASE)
    document["spec"]["engine"]["tensorParallelSize"] = 40
    document["spec"]["resources"]["gpusPerNode"] = 64
    result = validate(document)
    error = finding(result, "tp_not_divisor_of_model_dimension")
    assert "'1408 is not divisible by 40'" in error.message
    assert "40" not in error.fix.split(":")[1]


def test_tp_that_does_not_divide_attention_heads() -> None:
    result = run(tensorParallelSize=3)
    assert "tp_not_divisor_of_attention_heads" in codes(result, "error")


def test_tp_over_kv_heads_is_fine_when_a_multiple() -> None:
    document = copy.deepcopy(BASE)
    document["spec"]["model"] = {"name": "llama-3.1-405b"}
    document["spec"]["engine"] = {"vllmVersion": "0.32.0", "tensorParallelSize": 16, "maxModelLen": 8192}
    document["spec"]["resources"] = {"gpuProduct": "NVIDIA-H200", "gpusPerNode": 16}
    result = validate(document)
    assert not [code for code in codes(result, "error") if code.startswith("tp_")]


def test_vllm083_llama4_4096_cites_16274_and_the_fix() -> None:
    result = run(maxModelLen=4096)
    error = finding(result, "chunked_local_attention_block_table_overrun")
    assert error.severity == "error"
    assert error.field == "spec.engine.maxModelLen"
    assert "vllm#16274" in error.message
    assert "vllm#16209" in error.message
    assert "every request" in error.message
    assert "4,096" in error.message
    assert "patched" in error.fix
    assert "multiple of attention_chunk_size" in error.fix
    assert ">= 0.8.4" in error.fix


def test_one_million_tokens_gives_a_576_token_danger_window() -> None:
    error = finding(run(maxModelLen=1_000_000), "chunked_local_attention_block_table_overrun")
    assert "last 576 tokens" in error.message
    assert "999,425..1,000,000" in error.message


@pytest.mark.parametrize(
    ("engine", "severity"),
    [
        ({"patched": True}, "info"),  # the plugin clips the indices
        ({"vllmVersion": "0.8.4"}, None),  # fixed upstream
        ({"vllmVersion": "0.8.2"}, None),  # no Llama-4 before 0.8.3, no hazard recorded
        ({"maxModelLen": 999_424}, None),  # a multiple of 8192
    ],
)
def test_overrun_remedies_clear_the_error(engine: dict[str, Any], severity: str | None) -> None:
    result = run(**({"maxModelLen": 1_000_000} | engine))
    found = [item for item in result.findings if item.code == "chunked_local_attention_block_table_overrun"]
    assert [item.severity for item in found] == ([severity] if severity else [])


def test_dense_llama_on_083_is_not_flagged_for_chunked_attention() -> None:
    document = copy.deepcopy(BASE)
    document["spec"]["model"] = {"name": "llama-3.1-8b"}
    document["spec"]["engine"] = {"vllmVersion": "0.8.3", "patched": False, "maxModelLen": 4000}
    assert "chunked_local_attention_block_table_overrun" not in codes(validate(document))


def test_max_model_len_beyond_the_model() -> None:
    document = copy.deepcopy(BASE)
    document["spec"]["model"] = {"name": "llama-4-maverick-fp8"}
    document["spec"]["engine"]["maxModelLen"] = 2_000_000
    document["spec"]["resources"]["gpuProduct"] = "NVIDIA-H200"
    error = finding(validate(document), "max_model_len_exceeds_model_limit")
    assert "1,048,576" in error.message


def test_context_that_does_not_fit_names_the_largest_that_does() -> None:
    result = run(maxModelLen=2_000_000)
    error = finding(result, "max_model_len_does_not_fit")
    assert result.plan is not None
    fits = result.plan.max_model_len_that_fits
    assert 1_000_000 < fits < 2_000_000
    assert f"{fits:,}" in error.message
    assert str(fits) in error.fix


def test_default_context_of_scout_does_not_fit_on_h100() -> None:
    engine = copy.deepcopy(BASE["spec"]["engine"])
    del engine["maxModelLen"]
    document = copy.deepcopy(BASE)
    document["spec"]["engine"] = engine
    error = finding(validate(document), "max_model_len_does_not_fit")
    assert "default maxModelLen 10,485,760" in error.message


def test_hybrid_kv_rule_from_vllm_014() -> None:
    full = run(vllmVersion="0.13.0", maxModelLen=2_097_152, patched=True)
    hybrid = run(vllmVersion="0.14.0", maxModelLen=2_097_152, patched=True)
    assert "max_model_len_does_not_fit" in codes(full, "error")
    assert hybrid.valid
    assert hybrid.plan is not None
    assert hybrid.plan.kv_cache_rule == "HybridChunkedLocal"
    disabled = run(vllmVersion="0.14.0", maxModelLen=2_097_152, extraArgs=["--disable-hybrid-kv-cache-manager"])
    assert disabled.plan is not None
    assert disabled.plan.kv_cache_rule == "FullLength"
    # Below one chunk plus a batch both rules cost the same.
    small_full, small_hybrid = run(vllmVersion="0.13.0", maxModelLen=8192), run(vllmVersion="0.14.0", maxModelLen=8192)
    assert small_full.plan is not None
    assert small_hybrid.plan is not None
    assert (
        small_full.plan.max_concurrent_full_length_sequences == small_hybrid.plan.max_concurrent_full_length_sequences
    )


def test_weights_that_do_not_fit_suggest_more_gpus() -> None:
    result = run(tensorParallelSize=2, maxModelLen=8192)
    error = finding(result, "weights_exceed_gpu_memory")
    assert "tensorParallelSize 4" in error.fix


def test_placement_against_nodes() -> None:
    document = copy.deepcopy(BASE)
    document["spec"]["resources"] = {"gpuProduct": "NVIDIA-H100-80GB-HBM3", "gpusPerNode": 4, "nodeCount": 1}
    document["spec"]["replicas"] = 2
    result = validate(document)
    assert {"tp_exceeds_gpus_per_node", "not_enough_nodes"} <= set(codes(result, "error"))


def test_pipeline_parallel_across_nodes() -> None:
    result = run(tensorParallelSize=8, pipelineParallelSize=2, maxModelLen=8192)
    assert "multi_node_replica" in codes(result, "info")
    assert result.effective is not None
    assert result.effective.nodes_per_replica == 2


def test_unknown_model_and_gpu() -> None:
    document = copy.deepcopy(BASE)
    document["spec"]["model"] = {"name": "acme/unknown"}
    document["spec"]["resources"] = {"gpuProduct": "NVIDIA-Imaginary"}
    result = validate(document)
    assert "unknown_model" in codes(result, "error")
    assert "unknown_gpu_product" in codes(result, "warning")


def test_inline_config_describes_a_model_outside_the_catalog() -> None:
    document = copy.deepcopy(BASE)
    document["spec"]["model"] = {
        "name": "acme/tiny",
        "config": {
            "inline": {
                "hidden_size": 2048,
                "num_hidden_layers": 16,
                "num_attention_heads": 32,
                "num_key_value_heads": 8,
                "vocab_size": 128256,
                "max_position_embeddings": 8192,
            }
        },
    }
    document["spec"]["engine"] = {"vllmVersion": "0.32.0", "tensorParallelSize": 16, "maxModelLen": 8192}
    result = validate(document)
    assert "tp_incompatible_with_kv_heads" not in codes(result)  # 16 is a multiple of 8 KV heads
    assert "tp_exceeds_gpus_per_node" in codes(result, "error")
    document["spec"]["model"]["config"]["inline"]["num_key_value_heads"] = "eight"
    error = finding(validate(document), "invalid_model_config")
    assert error.field == "spec.model.config.inline.num_key_value_heads"


def test_extra_args_may_not_override_the_spec() -> None:
    result = run(extraArgs=["--max-model-len=4096", "--enable-prefix-caching", "-tp", "4"])
    conflicts = [item for item in result.findings if item.code == "extra_arg_conflicts_with_spec"]
    assert [item.field for item in conflicts] == ["spec.engine.extraArgs[0]", "spec.engine.extraArgs[2]"]


@pytest.mark.parametrize("args", [["--hf-token", "hf_" + "x" * 34], ["--hf-token=hf_" + "x" * 34]])
def test_a_token_in_extra_args_is_refused_without_repeating_it(args: list[str]) -> None:
    result = run(extraArgs=["--enable-prefix-caching", *args])
    assert not result.valid
    error = finding(result, "secret_in_extra_args")
    assert (error.severity, error.field) == ("error", "spec.engine.extraArgs[1]")
    assert "spec.model.tokenSecretRef" in error.fix
    assert "x" * 10 not in error.message + error.fix
    # Refused, yet the effective args still reach status: without the value.
    assert result.effective is not None
    assert "x" * 10 not in " ".join(result.effective.args)
    assert result.effective.args[-1].endswith("<redacted>")
    assert "--enable-prefix-caching" in result.effective.args


def test_effective_args_and_image() -> None:
    result = run(patched=True, maxNumSeqs=64, kvCacheDtype="fp8", extraArgs=["--enable-prefix-caching"])
    assert result.effective is not None
    assert result.effective.image == "ghcr.io/llamaops/vllm:0.8.3-llamaops"
    assert result.effective.args == [
        "--model",
        "meta-llama/Llama-4-Scout-17B-16E-Instruct",
        "--served-model-name",
        "meta-llama/Llama-4-Scout-17B-16E-Instruct",
        "--tensor-parallel-size",
        "8",
        "--max-model-len",
        "1048576",
        "--gpu-memory-utilization",
        "0.9",
        "--max-num-seqs",
        "64",
        "--kv-cache-dtype",
        "fp8",
        "--enable-prefix-caching",
    ]
    assert run().effective is not None
    assert run().effective.image == "docker.io/vllm/vllm-openai:v0.8.3"


def test_pvc_source_maps_to_the_mount() -> None:
    document = copy.deepcopy(BASE)
    document["spec"]["model"]["source"] = "pvc://weights/llama4/scout"
    result = validate(document)
    assert result.effective is not None
    assert result.effective.args[:2] == ["--model", "/models/llama4/scout"]


def test_cudagraph_and_flashinfer_hazards_on_recent_vllm() -> None:
    short = run(vllmVersion="0.23.0", maxModelLen=256, patched=True)
    assert "full_cudagraph_dummy_run_block_table_overrun" in codes(short, "warning")
    eager = run(vllmVersion="0.23.0", maxModelLen=256, extraArgs=["--enforce-eager"])
    assert "full_cudagraph_dummy_run_block_table_overrun" not in codes(eager)
    document = copy.deepcopy(BASE)
    document["spec"]["engine"] = {"vllmVersion": "0.30.0", "tensorParallelSize": 8, "maxModelLen": 131072}
    document["spec"]["resources"]["gpuProduct"] = "NVIDIA-B200"
    warning = finding(validate(document), "flashinfer_local_attention_buffer_overflow")
    assert warning.severity == "warning"
    assert "vllm#49980" in warning.message


def test_schema_errors_become_findings_with_paths() -> None:
    document = copy.deepcopy(BASE)
    document["spec"]["engine"]["gpuMemoryUtilization"] = 1.5
    document["spec"]["engine"]["tensorParalelSize"] = 8
    document["spec"]["replicas"] = -1
    result = validate(document)
    by_field = {item.field: item.code for item in result.findings}
    assert by_field["spec.engine.gpuMemoryUtilization"] == "out_of_range"
    assert by_field["spec.engine.tensorParalelSize"] == "unknown_field"
    assert by_field["spec.replicas"] == "out_of_range"
    assert not result.valid
    assert result.effective is None


def test_not_a_llama_deployment() -> None:
    assert codes(validate([1, 2])) == ["not_an_object"]
    wrong = copy.deepcopy(BASE)
    wrong["apiVersion"] = "apps/v1"
    assert "not_a_llama_deployment" in codes(validate(wrong), "error")


def test_findings_are_ordered_errors_first() -> None:
    severities = [item.severity for item in run(maxModelLen=4096, tensorParallelSize=5).findings]
    assert severities == sorted(severities, key=["error", "warning", "info"].index)
