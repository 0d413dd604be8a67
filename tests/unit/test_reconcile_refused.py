"""A child refused by the API server (422) is reported as an error finding that holds for its generation."""

from __future__ import annotations

from pathlib import Path

import yaml

from llama_operator.desired import REFUSED
from llama_operator.desired import with_refusal as _with_refusal
from llama_operator.planning import Finding, validate

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "llama31-8b-h100.yaml"
REFUSAL = Finding(REFUSED, "error", "spec", "the API server refused the Deployment rendered from this spec: no", "fix")


def _valid() -> tuple[dict, object]:
    document = yaml.safe_load(EXAMPLE.read_text())
    document["metadata"]["generation"] = 3
    return document, validate(document)


def test_a_refusal_makes_a_valid_result_invalid_and_keeps_the_plan() -> None:
    _, result = _valid()
    assert result.valid
    refused = result.refused(REFUSAL)
    assert not refused.valid
    assert refused.errors == (REFUSAL,)
    assert refused.effective == result.effective
    assert refused.plan == result.plan
    assert result.valid  # the original is unchanged


def test_the_refusal_holds_for_its_generation_only() -> None:
    document, result = _valid()
    document["status"] = {"observedGeneration": 3, "findings": [REFUSAL.as_dict()]}
    kept = _with_refusal(result, document)
    assert not kept.valid
    assert [f.code for f in kept.errors] == [REFUSED]
    document["metadata"]["generation"] = 4  # the user changed the spec: a new reconcile decides
    assert _with_refusal(result, document).valid
    document["status"] = {"observedGeneration": 4, "findings": [{"code": "other", "severity": "warning"}]}
    assert _with_refusal(result, document).valid
