"""The packaged catalogs load, cite their sources, and hold the facts the planner relies on."""

from __future__ import annotations

import pytest

from llama_operator.knowledge import load_knowledge
from llama_operator.knowledge.catalog import _read, build_knowledge
from llama_operator.planning.issues import PREDICATES

KNOWLEDGE = load_knowledge()


def test_catalog_lists_the_models_the_issue_names() -> None:
    for name in (
        "meta-llama/Llama-4-Scout-17B-16E-Instruct",
        "meta-llama/Llama-4-Scout-17B-16E",
        "meta-llama/Llama-4-Maverick-17B-128E-Instruct",
        "meta-llama/Llama-4-Maverick-17B-128E",
        "meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8",
        "meta-llama/Llama-3.1-8B-Instruct",
        "meta-llama/Llama-3.1-70B-Instruct",
        "meta-llama/Llama-3.1-405B-Instruct",
        "meta-llama/Llama-3.3-70B-Instruct",
        "meta-llama/Llama-3.2-1B-Instruct",
        "meta-llama/Llama-3.2-3B-Instruct",
    ):
        assert KNOWLEDGE.model(name) is not None, name
    assert KNOWLEDGE.model("META-LLAMA/llama-4-scout-17b-16e-instruct") is KNOWLEDGE.model("llama-4-scout")


def test_every_entry_cites_a_source() -> None:
    for model in KNOWLEDGE.models:
        assert model.sources, model.name
    for gpu in KNOWLEDGE.gpus:
        assert gpu.sources, gpu.product
    for issue in KNOWLEDGE.issues:
        assert issue.issue_links, issue.id
        assert issue.verified, issue.id
        assert all(
            link.startswith("https://github.com/vllm-project/vllm/") for link in issue.issue_links + issue.fix_links
        )


def test_llama4_facts_from_config_json() -> None:
    scout = KNOWLEDGE.model("llama-4-scout")
    maverick = KNOWLEDGE.model("llama-4-maverick-fp8")
    assert scout is not None
    assert maverick is not None
    for model in (scout, maverick):
        assert (model.hidden_size, model.num_layers, model.num_attention_heads, model.num_kv_heads) == (5120, 48, 40, 8)
        assert (model.head_dim, model.vocab_size, model.attention_chunk_size) == (128, 202048, 8192)
        # Every 4th layer is NoPE/global; the other 36 use chunked local attention.
        assert (model.global_layers, model.chunked_local_layers) == (12, 36)
    assert (scout.num_experts, scout.interleave_moe_layer_step) == (16, 1)
    assert (maverick.num_experts, maverick.interleave_moe_layer_step) == (128, 2)
    # vLLM does not scale llama3-type rope: the derived maximum is max_position_embeddings.
    assert scout.derived_max_model_len() == 10485760
    assert maverick.derived_max_model_len() == 1048576
    # The per-layer breakdown lands near the published totals (109B and 400B, vision included).
    assert abs(scout.breakdown()["text_total"] + scout.vision_parameters - 109e9) / 109e9 < 0.01
    assert abs(maverick.breakdown()["text_total"] + maverick.vision_parameters - 400e9) / 400e9 < 0.01


def test_gpu_catalog_by_product_label_and_alias() -> None:
    h100 = KNOWLEDGE.gpu("NVIDIA-H100-80GB-HBM3")
    assert h100 is not None
    assert h100.memory_mib == 81559
    assert KNOWLEDGE.gpu("h100") is h100
    for product in ("NVIDIA-H200", "NVIDIA-A100-SXM4-40GB", "NVIDIA-A100-SXM4-80GB", "NVIDIA-L40S", "NVIDIA-B200"):
        assert KNOWLEDGE.gpu(product) is not None, product
    b200 = KNOWLEDGE.gpu("NVIDIA-B200")
    assert b200 is not None
    assert b200.attention_backend == "FLASHINFER"


def test_every_known_issue_condition_has_a_predicate() -> None:
    assert {issue.condition for issue in KNOWLEDGE.issues} <= set(PREDICATES)


def test_known_issue_version_ranges() -> None:
    overrun = KNOWLEDGE.issue("chunked_local_attention_block_table_overrun")
    assert overrun is not None
    assert overrun.affects_version("0.8.3")
    assert overrun.affects_version("0.8.3+cu124")
    assert not overrun.affects_version("0.8.2")
    assert not overrun.affects_version("0.8.4")
    assert overrun.patched_in("0.8.3")
    assert not overrun.patched_in("0.9.0")
    assert overrun.affects_version("not-a-version"), "an unparsable version is treated as affected"
    oov = KNOWLEDGE.issue("out_of_vocab_token_ids")
    assert oov is not None
    assert oov.affects_version("0.1.0")
    assert oov.patched_in("0.32.0")
    assert not oov.patched_in("0.8.3")


@pytest.mark.parametrize(
    ("issue_id", "text"),
    [
        (
            "chunked_local_attention_block_table_overrun",
            "/pytorch/aten/src/ATen/native/cuda/IndexKernel.cu:94: operator(): Assertion `-sizes[i] <= index` failed.",
        ),
        ("chunked_local_attention_block_table_overrun", "RuntimeError: CUDA error: device-side assert triggered"),
        ("out_of_vocab_token_ids", "IndexError: index out of range in self"),
        (
            "flashinfer_local_attention_buffer_overflow",
            "ValueError: provided out is the wrong size for the accumulation",
        ),
        ("full_cudagraph_dummy_run_block_table_overrun", "CUDA error: an illegal memory access was encountered"),
    ],
)
def test_symptom_patterns_match_upstream_text(issue_id: str, text: str) -> None:
    issue = KNOWLEDGE.issue(issue_id)
    assert issue is not None
    assert issue.matches_symptom(text)
    assert not issue.matches_symptom("INFO: Started server process")


def test_duplicate_catalog_names_are_refused() -> None:
    models = _read("models.yaml")
    models["models"].append(dict(models["models"][0]))
    with pytest.raises(ValueError, match="listed twice"):
        build_knowledge(models, _read("gpus.yaml"), _read("known_issues.yaml"), _read("planner.yaml"))


def test_bad_version_specifier_is_refused() -> None:
    issues = _read("known_issues.yaml")
    issues["issues"][0]["affected"] = "== not a version"
    with pytest.raises(ValueError, match="specifier"):
        build_knowledge(_read("models.yaml"), _read("gpus.yaml"), issues, _read("planner.yaml"))


def test_layer_sums_are_remembered_per_model_and_not_copied() -> None:
    """planning.memory sums over a stage's layers once per catalog model (issue #21); a modified copy of a model
    starts with an empty memo, so it never reuses the original's sums."""
    from dataclasses import replace

    from llama_operator.planning.memory import stage_weights

    scout = load_knowledge().model("llama-4-scout")
    assert scout is not None
    fresh = replace(scout, name=scout.name)
    layers = range(0, scout.num_layers // 2)
    first = stage_weights(fresh, layers, True, False, 8, None)
    assert stage_weights(fresh, layers, True, False, 8, None) == first
    assert stage_weights(fresh, layers, True, False, 8, "fp8") < first  # online FP8: its own entry
    calls: list[int] = []
    assert fresh.layer_sum("weight bytes", layers, None, lambda index: calls.append(index) or 0.0) > 0
    assert calls == []  # remembered
    thinner = replace(fresh, intermediate_size=fresh.intermediate_size // 2)
    assert stage_weights(thinner, layers, True, False, 8, None) < first  # not the original's memo
