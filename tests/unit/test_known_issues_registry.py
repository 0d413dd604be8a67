"""The known-issue registry: its loader refuses what it cannot trust, every entry says how it is known, and every
planner condition fires on a spec that hits the hazard and stays quiet on one that does not."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from llama_operator.api import LlamaDeploymentSpec
from llama_operator.knowledge import load_knowledge
from llama_operator.knowledge.catalog import _read
from llama_operator.knowledge.issues import EVIDENCE_LEVELS, known_issue_from_dict
from llama_operator.planning.engine import engine_settings
from llama_operator.planning.findings import Finding
from llama_operator.planning.issues import CRASH_ONLY, PREDICATES, check_known_issues, exposes, speculative_method
from llama_operator.planning.resolve import resolve

KNOWLEDGE = load_knowledge()
ENTRIES: list[dict[str, Any]] = _read("known_issues.yaml")["issues"]
SCOUT = "meta-llama/Llama-4-Scout-17B-16E-Instruct"
LLAMA8B = "meta-llama/Llama-3.1-8B-Instruct"
LLAMA70B = "meta-llama/Llama-3.1-70B-Instruct"
# The ids the patched image's crash reporter names (the entries with a report_pattern: its facts.json).
SHARED_IDS = {"chunked_local_attention_block_table_overrun", "out_of_vocab_token_ids"}


def entry(issue_id: str) -> dict[str, Any]:
    return copy.deepcopy(next(item for item in ENTRIES if item["id"] == issue_id))


def findings(
    model: str, version: str, extra: list[str] | None = None, tp: int = 8, pp: int = 1, **engine: Any
) -> dict[str, Finding]:
    """The known-issue findings for one spec, by code."""
    spec = LlamaDeploymentSpec.model_validate(
        {
            "model": {"name": model},
            "engine": {
                "vllmVersion": version,
                "tensorParallelSize": tp,
                "pipelineParallelSize": pp,
                "maxModelLen": 16384,
                "extraArgs": extra or [],
                **engine,
            },
            "resources": {"gpuProduct": "NVIDIA-H100-80GB-HBM3"},
        }
    )
    resolved = resolve(spec, KNOWLEDGE)
    assert resolved.model is not None
    settings = engine_settings(spec, resolved.model, resolved.gpu, KNOWLEDGE)
    return {item.code: item for item in check_known_issues(resolved.model, settings, KNOWLEDGE)}


def speculative(config: dict[str, Any]) -> list[str]:
    return ["--speculative-config", json.dumps(config)]


# --- the registry as data ---


def test_registry_holds_the_shared_ids_and_at_least_twelve_more() -> None:
    ids = [issue.id for issue in KNOWLEDGE.issues]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*", issue_id) for issue_id in ids)
    assert set(ids) >= SHARED_IDS
    # The two entries of the first registry plus the two after them (FlashInfer, CUDA-graph dummy runs) predate
    # this survey; the rest are new.
    assert len(ids) - 4 >= 12


def test_every_entry_says_how_it_is_known_and_probes_where_it_says_so() -> None:
    for issue in KNOWLEDGE.issues:
        assert issue.evidence in EVIDENCE_LEVELS, issue.id
        if issue.evidence == "source_probe":
            assert issue.probe is not None, issue.id
    by_level = {level: [i.id for i in KNOWLEDGE.issues if i.evidence == level] for level in EVIDENCE_LEVELS}
    # Reproduced here: 0.8.3's block-table function and 0.32.0's engine death, both on the CPU (tests/engine).
    assert set(by_level["reproduced_cpu"]) == SHARED_IDS
    assert by_level["reproduced_gpu"] == []


def test_severity_error_only_where_failure_is_certain() -> None:
    # Crash-only entries never fire; an error would claim a certainty they cannot have.
    for issue in KNOWLEDGE.issues:
        if issue.condition == CRASH_ONLY:
            assert issue.severity == "warning", issue.id


def test_every_condition_names_a_predicate() -> None:
    assert {issue.condition for issue in KNOWLEDGE.issues} <= set(PREDICATES)


def test_every_entry_links_upstream_and_has_a_symptom_and_a_remedy() -> None:
    for issue in KNOWLEDGE.issues:
        assert issue.issue_links, issue.id
        assert all(link.startswith("https://github.com/vllm-project/vllm/") for link in issue.issue_links)
        assert all(link.startswith("https://github.com/vllm-project/vllm/pull/") for link in issue.fix_links)
        assert issue.symptoms, issue.id
        assert issue.remedies, issue.id


# --- the loader ---


def test_evidence_is_required_and_checked() -> None:
    data = entry("sampler_warmup_oom")
    del data["evidence"]
    with pytest.raises(ValueError, match="evidence must be one of"):
        known_issue_from_dict(data)
    data["evidence"] = "hearsay"
    with pytest.raises(ValueError, match="evidence must be one of"):
        known_issue_from_dict(data)


def test_source_probe_evidence_needs_a_probe() -> None:
    data = entry("llama4_lora_unsupported")
    del data["probe"]
    with pytest.raises(ValueError, match="source_probe needs a probe"):
        known_issue_from_dict(data)
    data["evidence"] = "cited"
    assert known_issue_from_dict(data).probe is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"files": []}, "probe files"),
        ({"files": "vllm/config.py"}, "probe files"),
        ({"releases": []}, "probe releases"),
        ({"releases": ["latest"]}, "must be vLLM versions"),
        ({"bug": None, "fix": None}, "needs a bug or a fix"),
        ({"fix": "class ("}, "not a regular expression"),
        # 0.11.1 and later are outside ">=0.8.3,<0.11.1": such a probe could not show the hazard anywhere.
        ({"releases": ["0.11.1", "0.14.0"]}, "no release in the affected range"),
    ],
)
def test_malformed_probes_are_refused(change: dict[str, Any], message: str) -> None:
    data = entry("llama4_lora_unsupported")
    data["probe"].update(change)
    with pytest.raises(ValueError, match=message):
        known_issue_from_dict(data)


def test_probe_reads_bug_and_fix_together() -> None:
    probe = known_issue_from_dict(entry("llama4_eagle_missing_lm_head")).probe
    assert probe is not None
    assert probe.hazard_in("process_eagle_weight(self, name)")
    assert not probe.hazard_in("process_eagle_weight(self, name)\nself.lm_head = ParallelLMHead(")
    assert not probe.hazard_in("no eagle weights here")


# --- planner conditions: a spec that hits each one, and one that does not ---


def test_pipeline_parallel_on_llama4_083() -> None:
    hit = findings(SCOUT, "0.8.3", tp=4, pp=2)["llama4_pipeline_parallel_unsupported"]
    assert (hit.severity, hit.field) == ("error", "spec.engine.pipelineParallelSize")
    assert "pipelineParallelSize 2" in hit.message
    assert "upgrade to vLLM >= 0.8.4" in hit.fix
    assert "llama4_pipeline_parallel_unsupported" not in findings(SCOUT, "0.8.3", tp=8, pp=1)
    assert "llama4_pipeline_parallel_unsupported" not in findings(SCOUT, "0.8.4", tp=4, pp=2)
    assert "llama4_pipeline_parallel_unsupported" not in findings(LLAMA70B, "0.8.3", tp=4, pp=2)


def test_lora_on_llama4_before_0_11_1() -> None:
    hit = findings(SCOUT, "0.8.3", ["--enable-lora", "--max-lora-rank", "64"])["llama4_lora_unsupported"]
    assert (hit.severity, hit.field) == ("error", "spec.engine.extraArgs")
    assert "--enable-lora" in hit.message
    assert "llama4_lora_unsupported" in findings(SCOUT, "0.11.0", ["--enable-lora"])
    assert "llama4_lora_unsupported" in findings(SCOUT, "0.11.0", ["--enable_lora"])
    assert "llama4_lora_unsupported" not in findings(SCOUT, "0.11.1", ["--enable-lora"])
    assert "llama4_lora_unsupported" not in findings(SCOUT, "0.8.3")
    assert "llama4_lora_unsupported" not in findings(LLAMA8B, "0.8.3", ["--enable-lora"], tp=1)


def test_draft_model_speculation_in_0_10_to_0_14() -> None:
    draft = speculative({"model": "meta-llama/Llama-3.2-1B-Instruct", "num_speculative_tokens": 5})
    hit = findings(LLAMA70B, "0.12.0", draft, tp=4)["speculative_draft_model_unsupported"]
    assert (hit.severity, hit.field) == ("error", "spec.engine.extraArgs")
    assert "meta-llama/Llama-3.2-1B-Instruct" in hit.message
    explicit = speculative({"method": "draft_model", "model": "my-org/tiny-draft", "num_speculative_tokens": 3})
    assert "speculative_draft_model_unsupported" in findings(LLAMA70B, "0.10.0", explicit, tp=4)
    assert "speculative_draft_model_unsupported" in findings(LLAMA70B, "0.14.0", draft, tp=4)
    assert "speculative_draft_model_unsupported" not in findings(LLAMA70B, "0.15.0", draft, tp=4)
    assert "speculative_draft_model_unsupported" not in findings(LLAMA70B, "0.9.2", draft, tp=4)
    # An unknown name without a method may be an MLP speculator vLLM detects from its config: never refused.
    speculator = speculative({"model": "ibm-ai-platform/llama3-70b-accelerator", "num_speculative_tokens": 3})
    assert "speculative_draft_model_unsupported" not in findings(LLAMA70B, "0.12.0", speculator, tp=4)
    eagle = speculative({"model": "yuhuili/EAGLE-LLaMA3.1-Instruct-8B", "num_speculative_tokens": 3})
    assert "speculative_draft_model_unsupported" not in findings(LLAMA8B, "0.12.0", eagle, tp=1)
    ngram = speculative({"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_max": 4})
    assert "speculative_draft_model_unsupported" not in findings(LLAMA8B, "0.12.0", ngram, tp=1)


def test_eagle3_on_llama4_before_0_11_1() -> None:
    eagle3 = speculative({"method": "eagle3", "model": "nvidia/Llama-4-Maverick-17B-128E-Eagle3"})
    hit = findings(SCOUT, "0.11.0", eagle3)["llama4_eagle3_unsupported"]
    assert (hit.severity, hit.field) == ("error", "spec.engine.extraArgs")
    named = speculative({"model": "nvidia/Llama-4-Maverick-17B-128E-Eagle3", "num_speculative_tokens": 3})
    assert "llama4_eagle3_unsupported" in findings(SCOUT, "0.9.0", named)
    assert "llama4_eagle3_unsupported" not in findings(SCOUT, "0.11.1", eagle3)
    assert "llama4_eagle3_unsupported" not in findings(SCOUT, "0.8.4", eagle3)
    assert "llama4_eagle3_unsupported" not in findings(LLAMA8B, "0.11.0", eagle3, tp=1)


def test_eagle_head_lm_head_on_llama4_0_11_1_to_0_12() -> None:
    head = "morgendave/EAGLE-Llama-4-Scout-17B-16E-Instruct"
    hit = findings(SCOUT, "0.12.0", speculative({"method": "eagle", "model": head}))["llama4_eagle_missing_lm_head"]
    assert (hit.severity, hit.field) == ("warning", "spec.engine.extraArgs")
    by_name = speculative({"model": head, "num_speculative_tokens": 7})
    assert "llama4_eagle_missing_lm_head" in findings(SCOUT, "0.11.1", by_name)
    assert "llama4_eagle_missing_lm_head" not in findings(SCOUT, "0.13.0", by_name)
    assert "llama4_eagle_missing_lm_head" not in findings(SCOUT, "0.11.0", by_name)
    assert "llama4_eagle_missing_lm_head" not in findings(SCOUT, "0.12.0")


def test_tool_call_parser_missing_from_the_release() -> None:
    def tools(parser: str) -> list[str]:
        return ["--enable-auto-tool-choice", "--tool-call-parser", parser]

    hit = findings(SCOUT, "0.8.4", tools("llama4_pythonic"))["tool_call_parser_not_in_release"]
    assert (hit.severity, hit.field) == ("error", "spec.engine.extraArgs")
    assert "0.9.0" in hit.message
    assert "tool_call_parser_not_in_release" in findings(SCOUT, "0.8.5", tools("llama4_pythonic"))
    assert "tool_call_parser_not_in_release" in findings(SCOUT, "0.8.3", tools("llama4_json"))
    assert "tool_call_parser_not_in_release" not in findings(SCOUT, "0.8.5", tools("llama4_json"))
    assert "tool_call_parser_not_in_release" not in findings(SCOUT, "0.9.0", tools("llama4_pythonic"))
    assert "tool_call_parser_not_in_release" not in findings(SCOUT, "0.8.3", tools("llama3_json"))
    # Without auto tool choice the server never looks the parser up.
    assert "tool_call_parser_not_in_release" not in findings(SCOUT, "0.8.4", ["--tool-call-parser", "llama4_json"])


def test_limit_mm_per_prompt_key_value_from_0_10() -> None:
    hit = findings(SCOUT, "0.10.0", ["--limit-mm-per-prompt", "image=10"])["limit_mm_per_prompt_key_value_rejected"]
    assert (hit.severity, hit.field) == ("error", "spec.engine.extraArgs")
    assert "image=10" in hit.message
    assert "limit_mm_per_prompt_key_value_rejected" in findings(SCOUT, "0.32.0", ["--limit_mm_per_prompt=image=2"])
    assert "limit_mm_per_prompt_key_value_rejected" not in findings(
        SCOUT, "0.32.0", ["--limit-mm-per-prompt", '{"image": 10}']
    )
    old_release = findings(SCOUT, "0.9.2", ["--limit-mm-per-prompt", "image=10"])
    assert "limit_mm_per_prompt_key_value_rejected" not in old_release


def test_crash_only_entries_never_fire_but_stay_candidates() -> None:
    crash_only = [issue for issue in KNOWLEDGE.issues if issue.condition == CRASH_ONLY]
    assert {issue.id for issue in crash_only} >= {"sampler_warmup_oom", "kv_cache_no_memory"}
    spec = LlamaDeploymentSpec.model_validate(
        {
            "model": {"name": SCOUT},
            "engine": {"vllmVersion": "0.20.0", "tensorParallelSize": 8, "maxModelLen": 16384},
            "resources": {"gpuProduct": "NVIDIA-H100-80GB-HBM3"},
        }
    )
    resolved = resolve(spec, KNOWLEDGE)
    assert resolved.model is not None
    settings = engine_settings(spec, resolved.model, resolved.gpu, KNOWLEDGE)
    codes = {item.code for item in check_known_issues(resolved.model, settings, KNOWLEDGE)}
    for issue in crash_only:
        assert issue.id not in codes
        assert exposes(issue, resolved.model, settings)
    lora = KNOWLEDGE.issue("llama4_lora_unsupported")
    assert lora is not None
    assert not exposes(lora, resolved.model, settings)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"method": "EAGLE", "model": "x/y"}, ("eagle", "x/y", True)),
        ({"model": "yuhuili/EAGLE3-LLaMA3.1-Instruct-8B"}, ("eagle3", "yuhuili/EAGLE3-LLaMA3.1-Instruct-8B", False)),
        ({"model": "morgendave/EAGLE-Llama-4-Scout"}, ("eagle", "morgendave/EAGLE-Llama-4-Scout", False)),
        ({"model": "x/medusa-head"}, (None, "x/medusa-head", False)),
        ({"model": "meta-llama/Llama-3.2-1B"}, ("draft_model", "meta-llama/Llama-3.2-1B", False)),
        ({"num_speculative_tokens": 3}, (None, "", False)),
    ],
)
def test_speculative_method_follows_vllm_detection(config: dict[str, Any], expected: tuple[Any, ...]) -> None:
    assert speculative_method({"--speculative-config": json.dumps(config)}) == expected


def test_speculative_config_that_is_not_json_names_no_method() -> None:
    assert speculative_method({"--speculative-config": "{not json"}) == (None, "", False)
    assert speculative_method({"--speculative-config": "[1, 2]"}) == (None, "", False)
    assert speculative_method({}) == (None, "", False)


def test_probes_of_bounded_ranges_read_a_release_on_the_other_side() -> None:
    # A range with a bound is proven only by a release outside it too: the last unaffected or the first fixed one.
    for issue in KNOWLEDGE.issues:
        if issue.probe is None or not str(issue.affected):
            continue
        outside = [release for release in issue.probe.releases if not issue.affects_version(release)]
        assert outside, issue.id


def test_the_engine_tier_reads_few_releases() -> None:
    # Each probed release is a wheel download on a cold CI cache (tests/engine/test_issue_ranges.py).
    releases = {release for issue in KNOWLEDGE.issues if issue.probe for release in issue.probe.releases}
    assert len(releases) <= 9, sorted(releases)
