"""A child the API server refused (422): an error finding that holds for its generation (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llama_operator.planning import Finding, ValidationResult

REFUSED = "rejected_by_apiserver"
REFUSED_MESSAGE_MAX = 600


def refusal_finding(kind: str, reason: str) -> Finding:
    """The API server refused a child rendered from a spec the planner passed (a field it does not allow, an
    admission policy, an object of the same name made by someone else)."""
    return Finding(
        REFUSED,
        "error",
        "spec",
        f"the API server refused the {kind} rendered from this spec: {reason[:REFUSED_MESSAGE_MAX]}",
        "change the spec so the field the message names is allowed, or ask the cluster admin about the policy "
        "that refuses it (or the owner of a clashing object); the operator tries again every minute",
    )


def with_refusal(result: ValidationResult, body: Mapping[str, Any]) -> ValidationResult:
    """A refusal holds for its generation: looks that only refresh status (child events, rechecks) keep it rather
    than report the spec valid again. A look that applies the children starts afresh."""
    status = body.get("status") or {}
    if status.get("observedGeneration") != (body.get("metadata") or {}).get("generation"):
        return result
    for found in status.get("findings") or []:
        if isinstance(found, Mapping) and found.get("code") == REFUSED:
            keys = ("field", "message", "fix")
            return result.refused(Finding(REFUSED, "error", *(str(found.get(k) or "") for k in keys)))
    return result
