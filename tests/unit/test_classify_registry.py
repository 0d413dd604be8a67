"""Crash text from the upstream issues (tests/fixtures/issues/upstream_texts.yaml) against the known-issue registry:
each text names its own entry and no other, every symptom is shown by real text, and the deployment context
(version, architecture, the spec's exposure) keeps an entry from being named where it cannot occur."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from llama_operator.api import LlamaDeploymentSpec
from llama_operator.health import CrashContext, Termination, classify, crash_context
from llama_operator.health.classify import _generic, match_known_issue
from llama_operator.knowledge import KnownIssue, load_knowledge

ROOT = Path(__file__).resolve().parents[2]
FIXTURES: list[dict[str, Any]] = yaml.safe_load(
    (ROOT / "tests" / "fixtures" / "issues" / "upstream_texts.yaml").read_text(encoding="utf-8")
)["fixtures"]
KNOWLEDGE = load_knowledge()

# Symptoms no upstream text in reach quotes, each with the reason it stays in the registry.
UNQUOTED = {
    # #16274's log was not retrievable; the generic CUDA line is kept for the crash report's detail (which the
    # crash plugin cuts to one line) and is checked against a sample in tests/unit/test_knowledge.py.
    ("chunked_local_attention_block_table_overrun", "device-side assert triggered"),
}


def text_of(fixture: dict[str, Any]) -> str:
    if "file" in fixture:
        return (ROOT / fixture["file"]).read_text(encoding="utf-8")
    return str(fixture["text"])


def fixture_id(fixture: dict[str, Any]) -> str:
    return f"{fixture['issue']}@{fixture['source'].rstrip('/').rsplit('/', 1)[-1][:24]}"


def context_of(fixture: dict[str, Any]) -> CrashContext:
    return CrashContext(vllm_version=fixture.get("vllm_version"), architecture=fixture.get("architecture"))


def claimants(text: str) -> set[str]:
    """Every entry with a specific (not engine-death) symptom in ``text``, whatever the context."""
    return {
        issue.id
        for issue in KNOWLEDGE.issues
        if any(pattern.search(text) and not _generic(pattern) for pattern in issue.symptoms)
    }


def issue(issue_id: str) -> KnownIssue:
    found = KNOWLEDGE.issue(issue_id)
    assert found is not None, issue_id
    return found


def test_every_entry_has_upstream_text() -> None:
    assert {fixture["issue"] for fixture in FIXTURES} == {entry.id for entry in KNOWLEDGE.issues}


def test_fixtures_cite_where_their_text_comes_from() -> None:
    for fixture in FIXTURES:
        assert fixture.get("source"), fixture["issue"]
        assert ("text" in fixture) != ("file" in fixture), fixture["issue"]
        if "text" in fixture:
            assert str(fixture["source"]).startswith("https://github.com/vllm-project/") or "e2e/fixtures/" in str(
                fixture["source"]
            ), fixture["issue"]


@pytest.mark.parametrize("fixture", FIXTURES, ids=fixture_id)
def test_upstream_text_names_its_entry(fixture: dict[str, Any]) -> None:
    text = text_of(fixture)
    assert match_known_issue(text, context_of(fixture), KNOWLEDGE.issues) == fixture["issue"]
    # The whole path: a container that died with this text as its termination message.
    result = classify(Termination(exit_code=1, reason="Error", message=text), context_of(fixture), KNOWLEDGE)
    assert result.known_issue == fixture["issue"]


@pytest.mark.parametrize("fixture", FIXTURES, ids=fixture_id)
def test_no_other_entry_claims_the_text(fixture: dict[str, Any]) -> None:
    assert claimants(text_of(fixture)) == {fixture["issue"], *fixture.get("also", ())}


def test_every_symptom_is_shown_by_real_text_of_its_entry() -> None:
    for entry in KNOWLEDGE.issues:
        texts = [text_of(fixture) for fixture in FIXTURES if fixture["issue"] == entry.id]
        for pattern in entry.symptoms:
            if (entry.id, pattern.pattern) in UNQUOTED:
                continue
            assert any(pattern.search(text) for text in texts), (entry.id, pattern.pattern)


def fixture_for(issue_id: str) -> str:
    return text_of(next(fixture for fixture in FIXTURES if fixture["issue"] == issue_id))


def test_an_entry_is_not_named_outside_its_versions_or_architectures() -> None:
    lora = fixture_for("llama4_lora_unsupported")
    assert match_known_issue(lora, CrashContext(vllm_version="0.11.1"), KNOWLEDGE.issues) is None
    assert match_known_issue(lora, CrashContext(architecture="LlamaForCausalLM"), KNOWLEDGE.issues) is None
    pipeline = fixture_for("llama4_pipeline_parallel_unsupported")
    assert match_known_issue(pipeline, CrashContext(vllm_version="0.8.4"), KNOWLEDGE.issues) is None
    grammar = fixture_for("structured_output_grammar_kills_engine")
    assert match_known_issue(grammar, CrashContext(vllm_version="0.26.0"), KNOWLEDGE.issues) is None
    assert match_known_issue(grammar, CrashContext(vllm_version="0.25.0"), KNOWLEDGE.issues) == (
        "structured_output_grammar_kills_engine"
    )


def spec(version: str, extra: list[str] | None = None) -> LlamaDeploymentSpec:
    return LlamaDeploymentSpec.model_validate(
        {
            "model": {"name": "meta-llama/Llama-4-Scout-17B-16E-Instruct"},
            "engine": {
                "vllmVersion": version,
                "tensorParallelSize": 8,
                "maxModelLen": 16384,
                "extraArgs": extra or [],
            },
            "resources": {"gpuProduct": "NVIDIA-H100-80GB-HBM3"},
        }
    )


def test_a_deployment_without_the_condition_does_not_get_the_entry() -> None:
    lora = fixture_for("llama4_lora_unsupported")
    without = crash_context(spec("0.8.3"))
    assert match_known_issue(lora, without, KNOWLEDGE.issues) is None
    with_lora = crash_context(spec("0.8.3", ["--enable-lora"]))
    assert match_known_issue(lora, with_lora, KNOWLEDGE.issues) == "llama4_lora_unsupported"


@pytest.mark.parametrize(
    "issue_id",
    [
        "sampler_warmup_oom",
        "kv_cache_no_memory",
        "max_model_len_exceeds_kv_cache",
        "gpu_memory_in_use_at_startup",
        "structured_output_grammar_kills_engine",
    ],
)
def test_crash_only_entries_are_named_for_any_deployment_in_range(issue_id: str) -> None:
    entry = issue(issue_id)
    version = "0.20.0" if entry.affects_version("0.20.0") else "0.8.3"
    context = crash_context(spec(version))
    assert context.exposed_issues is not None
    assert issue_id in context.exposed_issues
    assert match_known_issue(fixture_for(issue_id), context, KNOWLEDGE.issues) == issue_id


def test_signatures_still_sort_the_crash() -> None:
    # The registry names the cause; the signature stays the classifier's own generic class.
    def signature(issue_id: str) -> str:
        return classify(Termination(exit_code=1, message=fixture_for(issue_id)), CrashContext(), KNOWLEDGE).signature

    assert signature("sampler_warmup_oom") == "cuda_oom"
    assert signature("kv_cache_no_memory") == "kv_cache_insufficient"
    assert signature("max_model_len_exceeds_kv_cache") == "kv_cache_insufficient"
    assert signature("chunked_local_attention_block_table_overrun") == "cuda_device_assert_index_oob"
    assert signature("full_cudagraph_dummy_run_block_table_overrun") == "illegal_memory_access"
