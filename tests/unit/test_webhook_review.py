"""The admission decision: refusals name field, code and fix; warnings; update rules; the AdmissionReview."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from llama_operator.planning import Finding, validate
from llama_operator.webhook import decide, respond
from llama_operator.webhook.review import (
    DENIED_CODE,
    MAX_WARNING,
    MAX_WARNINGS_TOTAL,
    describe_warning,
    warnings_for,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text(encoding="utf-8"))
    return document


def test_the_vllm083_example_is_refused_citing_the_issue_and_the_fix() -> None:
    decision = decide("CREATE", example("invalid-llama4-vllm083.yaml"))
    assert not decision.allowed
    assert decision.code == DENIED_CODE
    assert "LlamaDeployment research/llama4-scout-eval refused (1 error finding" in decision.message
    line = next(line for line in decision.message.splitlines() if line.startswith("- "))
    assert line.startswith("- spec.engine.maxModelLen: chunked_local_attention_block_table_overrun: ")
    assert "vllm#16274" in line
    assert "Fix: use the patched image" in line
    assert "PR #16209" in line


def test_tp5_is_refused_for_the_kv_heads() -> None:
    decision = decide("CREATE", example("invalid-llama4-tp5.yaml"))
    assert not decision.allowed
    assert "spec.engine.tensorParallelSize: tp_incompatible_with_kv_heads:" in decision.message
    assert "8 KV heads" in decision.message
    assert "Fix: use a tensor-parallel size from: 1, 2, 4, 8" in decision.message


def test_every_error_finding_gets_its_own_line() -> None:
    document = example("invalid-llama4-vllm083.yaml")
    document["spec"]["engine"]["tensorParallelSize"] = 5
    result = validate(document)
    decision = decide("CREATE", document)
    lines = [line for line in decision.message.splitlines() if line.startswith("- ")]
    assert len(lines) == len(result.errors) >= 2
    for finding, line in zip(result.errors, lines, strict=True):
        assert line.startswith(f"- {finding.field}: {finding.code}: ")
        assert f"Fix: {finding.fix}" in line


def test_the_scout_example_is_allowed_without_warnings() -> None:
    decision = decide("CREATE", example("llama4-scout.yaml"))
    assert decision.allowed
    assert decision.message == ""
    assert decision.warnings == ()


def test_a_warning_finding_becomes_an_admission_warning() -> None:
    decision = decide("CREATE", example("llama4-maverick-fp8-h200.yaml"))
    assert decision.allowed
    assert len(decision.warnings) == 1
    assert decision.warnings[0].startswith("spec.engine.patched: out_of_vocab_token_ids: Token ids >= vocab_size")
    assert " Fix: " in decision.warnings[0]


def test_info_findings_are_not_warnings() -> None:
    result = validate(example("llama4-scout.yaml"))
    assert any(finding.severity == "info" for finding in result.findings)
    assert decide("CREATE", example("llama4-scout.yaml")).warnings == ()


def test_a_refusal_also_carries_the_warnings() -> None:
    decision = decide("CREATE", example("invalid-llama4-vllm083.yaml"))
    assert [warning.split(":")[1].strip() for warning in decision.warnings] == ["out_of_vocab_token_ids"]


def test_an_update_that_changes_the_spec_is_validated_like_a_create() -> None:
    old = example("llama4-scout.yaml")
    new = copy.deepcopy(old)
    new["spec"]["engine"]["tensorParallelSize"] = 5
    decision = decide("UPDATE", new, old)
    assert not decision.allowed
    assert "tp_incompatible_with_kv_heads" in decision.message


def test_an_update_that_leaves_an_invalid_spec_alone_is_allowed_with_the_errors_as_warnings() -> None:
    # E.g. the operator removing its finalizer from an object stored before the webhook existed.
    old = example("invalid-llama4-vllm083.yaml")
    new = copy.deepcopy(old)
    new["metadata"]["labels"] = {"team": "research"}
    new["metadata"]["finalizers"] = []
    decision = decide("UPDATE", new, old)
    assert decision.allowed
    assert decision.warnings[0].startswith(
        "stored spec, not enforced: spec.engine.maxModelLen: chunked_local_attention_block_table_overrun: "
    )


def test_an_update_of_an_object_being_deleted_is_allowed() -> None:
    old = example("llama4-scout.yaml")
    new = copy.deepcopy(old)
    new["spec"]["engine"]["tensorParallelSize"] = 5
    new["metadata"]["deletionTimestamp"] = "2026-11-23T00:00:00Z"
    assert decide("UPDATE", new, old).allowed


def test_an_update_without_the_old_object_is_validated() -> None:
    assert not decide("UPDATE", example("invalid-llama4-tp5.yaml"), None).allowed


@pytest.mark.parametrize("operation", ["DELETE", "CONNECT", None])
def test_other_operations_are_allowed(operation: str | None) -> None:
    assert decide(operation, example("invalid-llama4-tp5.yaml")).allowed


def test_status_is_not_validated() -> None:
    document = example("llama4-scout.yaml")
    document["status"] = {"phase": 42, "unexpected": ["anything"]}
    assert decide("CREATE", document).allowed


def test_a_schema_error_names_its_field() -> None:
    document = example("llama4-scout.yaml")
    document["spec"]["engine"]["tensorParallelSize"] = "eight"
    decision = decide("CREATE", document)
    assert not decision.allowed
    assert "- spec.engine.tensorParallelSize: " in decision.message


def test_a_finding_without_a_field_is_attributed_to_the_object() -> None:
    decision = decide("CREATE", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})
    assert not decision.allowed
    assert "apiVersion: not_a_llama_deployment:" in decision.message
    assert decide("CREATE", {"metadata": []}).message.startswith("LlamaDeployment refused")


def finding(message: str = "m", fix: str = "do this", code: str = "some_code") -> Finding:
    return Finding(code, "warning", "spec.engine.maxModelLen", message, fix)


def test_a_short_warning_is_whole() -> None:
    assert describe_warning(finding("it breaks.")) == "spec.engine.maxModelLen: some_code: it breaks. Fix: do this"
    assert describe_warning(finding("x", fix="")) == "spec.engine.maxModelLen: some_code: x."


def test_shortening_keeps_the_fix_and_cuts_the_message() -> None:
    text = describe_warning(finding("a" * 500, fix="set maxModelLen to 8192"), limit=MAX_WARNING)
    assert len(text) == MAX_WARNING
    assert text.endswith("... Fix: set maxModelLen to 8192")
    assert text.startswith("spec.engine.maxModelLen: some_code: aaa")


def test_shortening_a_warning_whose_fix_alone_is_too_long_still_respects_the_limit() -> None:
    text = describe_warning(finding("m", fix="f" * 400), limit=MAX_WARNING)
    assert len(text) == MAX_WARNING
    assert text.endswith("...")


def test_warnings_stay_whole_while_they_fit_the_budget() -> None:
    long = finding("b" * 600)
    assert warnings_for([(long, "")]) == (describe_warning(long),)
    assert len(warnings_for([(long, "")])[0]) > MAX_WARNING


def test_past_the_budget_warnings_are_shortened_then_dropped() -> None:
    many = [(finding("c" * 600, code=f"code_{i}"), "") for i in range(40)]
    warnings = warnings_for(many)
    assert all(len(warning) <= MAX_WARNING for warning in warnings)
    assert sum(len(warning) + 10 for warning in warnings) <= MAX_WARNINGS_TOTAL
    assert 10 <= len(warnings) < 40
    assert [warning.split(": ")[1] for warning in warnings] == [f"code_{i}" for i in range(len(warnings))]


def review(
    operation: str, obj: dict[str, Any] | None, old: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    request = {"uid": "0df28fbd-5f5f-4f4c-9b5e-1", "operation": operation, "object": obj, "oldObject": old, **extra}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def test_respond_refuses_with_a_status_and_echoes_the_uid() -> None:
    answer = respond(review("CREATE", example("invalid-llama4-tp5.yaml")))
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["kind"] == "AdmissionReview"
    response = answer["response"]
    assert response["uid"] == "0df28fbd-5f5f-4f4c-9b5e-1"
    assert response["allowed"] is False
    assert response["status"]["code"] == DENIED_CODE
    assert "tp_incompatible_with_kv_heads" in response["status"]["message"]


def test_respond_allows_with_warnings_and_no_status() -> None:
    response = respond(review("CREATE", example("llama4-maverick-fp8-h200.yaml")))["response"]
    assert response["allowed"] is True
    assert "status" not in response
    assert response["warnings"][0].startswith("spec.engine.patched: out_of_vocab_token_ids:")


def test_respond_gives_a_dry_run_the_same_answer() -> None:
    document = example("invalid-llama4-vllm083.yaml")
    wet = respond(review("CREATE", document))["response"]
    dry = respond(review("CREATE", document, dryRun=True))["response"]
    assert dry == wet


def test_respond_survives_a_malformed_review() -> None:
    assert respond({})["response"] == {"uid": "", "allowed": True}
    assert respond({"request": "nonsense"})["response"]["allowed"] is True
    missing = respond(review("CREATE", None))["response"]
    assert missing["allowed"] is False
    assert missing["status"]["code"] == 400
