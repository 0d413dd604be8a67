"""Every example in examples/ validates with its documented outcome."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llama_operator.planning import validate

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# file -> the error codes it must produce (empty: valid). Adding an example means adding it here.
EXPECTED: dict[str, set[str]] = {
    "llama4-scout.yaml": set(),
    "llama4-maverick-fp8-h200.yaml": set(),
    "llama4-maverick-fp8-h100.yaml": set(),
    "llama4-maverick-bf16-h100-multinode.yaml": set(),
    "llama31-8b-h100.yaml": set(),
    "llama31-8b-h100-autoscaled.yaml": set(),
    "llama31-8b-l40s.yaml": set(),
    "custom-model-inline.yaml": set(),
    "invalid-llama4-vllm083.yaml": {"chunked_local_attention_block_table_overrun"},
    "invalid-llama4-tp5.yaml": {"tp_incompatible_with_kv_heads"},
}


def test_every_example_is_listed() -> None:
    assert {path.name for path in EXAMPLES.glob("*.yaml")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_outcome(name: str) -> None:
    documents = [doc for doc in yaml.safe_load_all((EXAMPLES / name).read_text(encoding="utf-8")) if doc]
    assert documents
    for document in documents:
        result = validate(document)
        assert {finding.code for finding in result.errors} == EXPECTED[name]
        assert result.valid == (not EXPECTED[name])
        assert name.startswith("invalid-") == (not result.valid)
