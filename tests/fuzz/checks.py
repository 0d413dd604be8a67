"""What every generated object must get from the operator's own code, in process: ``validate`` and the
reconcile path's ``plan`` return (never raise), report no internal error, and refuse only with coded findings."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llama_operator.handlers.reconcile import plan
from llama_operator.planning import ValidationResult, validate
from llama_operator.render import status as status_rules
from tests.fuzz.schema import crd_schema, violations

CODE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")


@dataclass(frozen=True)
class Verdict:
    """validate's answer in short: valid or not, and the error codes."""

    valid: bool
    codes: tuple[str, ...]


def as_stored(document: Mapping[str, Any], namespace: str = "fuzz") -> dict[str, Any]:
    """The object as the operator receives it: the apiserver's metadata (name, namespace, uid, generation; the
    apiserver refuses any other kind of metadata), the rest as written."""
    metadata = document.get("metadata")
    kept = (
        {key: value for key, value in metadata.items() if key in ("labels", "annotations")}
        if isinstance(metadata, Mapping)
        else {}
    )
    return {
        **document,
        "metadata": {**kept, "name": "fuzzed", "namespace": namespace, "uid": "0-fuzz", "generation": 1},
    }


def without_status(document: Any) -> Any:
    """What the webhook and plan() validate: status is the operator's own."""
    return {k: v for k, v in document.items() if k != "status"} if isinstance(document, Mapping) else document


def error_codes(document: Any) -> tuple[str, ...]:
    """The codes a refusal of ``document`` names (validate's error findings, status aside)."""
    return tuple(finding.code for finding in validate(without_status(document)).errors)


def codes_ok(codes: tuple[str, ...]) -> bool:
    return bool(codes) and all(CODE.fullmatch(code) for code in codes)


def _check(result: ValidationResult) -> Verdict:
    codes = tuple(finding.code for finding in result.errors)
    assert "internal_error" not in codes, result.findings
    assert all(CODE.fullmatch(finding.code) for finding in result.findings), result.findings
    assert result.valid or codes_ok(codes), result.findings
    json.dumps(result.as_dict())
    return Verdict(result.valid, codes)


def check_in_process(document: Any) -> Verdict:
    """validate() on one generated object as written (what the webhook sees) and plan() on it as stored (what
    the operator sees); AssertionError names what went wrong. Returns validate's verdict on the object as written."""
    verdict = _check(validate(document))
    if isinstance(document, Mapping):
        stored = as_stored(document)
        planned = plan(stored, service_monitors=False)
        # plan() validates the object without its status (the operator's own), exactly as the webhook does.
        expected = _check(validate(without_status(stored)))
        assert _check(planned.result) == expected, (planned.result.findings, expected)
        status = status_rules.compute(
            generation=1,
            result=planned.result,
            rollout=None,
            old={},
            now="2026-01-01T00:00:00Z",
            endpoint="",
            selector="",
        )
        # The status the operator would write must pass the CRD's schema, or the apiserver refuses every write.
        assert not violations(status, crd_schema()["properties"]["status"], "status"), violations(
            status, crd_schema()["properties"]["status"], "status"
        )[:5]
        if expected.valid:
            assert planned.manifests, "a valid object renders children"
            json.dumps(planned.manifests)
        else:
            assert not planned.manifests, "an invalid object renders nothing"
    return verdict
