"""The admission decision: one AdmissionReview request in, allowed or refused with warnings out (pure).

The same ``planning.validate`` as ``llama-operator validate`` decides. Error findings refuse the request with a
message that names, for each, the field, the finding code and the fix; warning findings come back as admission
warnings, which kubectl prints as ``Warning: ...``. Info findings (the memory plan) stay in the status.

Update rules. No spec field is immutable: a new model, TP size or vLLM version is a new rollout, which the
operator performs, so updates are validated exactly like creates. Two kinds of update are always allowed, so an
object stored before this webhook existed (or before the knowledge base learned of a new crash) stays
manageable: updates that leave ``spec`` as it is (labels, annotations, the operator's finalizer), and updates of
an object that is being deleted. Such an update carries the stored spec's error findings as warnings instead.

Dry-run requests get the same decision: validation has no side effects (the configuration says sideEffects:
None, which is what lets the API server send dry-run requests to the webhook at all).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llama_operator.knowledge import Knowledge
from llama_operator.planning import Finding, validate

# The API server keeps warnings whole while all of them fit in 4096 characters; past that it cuts each to 256
# and drops what still does not fit (k8s.io/apiserver's warning recorder). We do the same ourselves, so that
# when warnings must be cut the fix survives and the message is shortened instead.
MAX_WARNING = 256
MAX_WARNINGS_TOTAL = 4096
# Each warning travels as a `299 - "<text>"` header; room for that wrapping when adding up.
HEADER_OVERHEAD = 10
# 403 (Forbidden) is the usual code for a webhook refusal. Not 422: clients read 422 as "Invalid", and
# `kubectl apply --force` answers an Invalid patch by deleting and recreating the object.
DENIED_CODE = 403
ELLIPSIS = "..."


@dataclass(frozen=True, slots=True)
class Decision:
    """What the webhook answers: allowed or not, the refusal message, and admission warnings."""

    allowed: bool
    message: str = ""
    warnings: tuple[str, ...] = ()
    code: int = 200


def _where(finding: Finding) -> str:
    return finding.field or "(object)"


def describe_error(finding: Finding) -> str:
    """One refusal line: field, code, message and fix."""
    line = f"{_where(finding)}: {finding.code}: {finding.message.rstrip('.')}."
    return f"{line} Fix: {finding.fix}" if finding.fix else line


def describe_warning(finding: Finding, prefix: str = "", limit: int | None = None) -> str:
    """One admission warning; with ``limit``, shortened to that length, the message before the fix."""
    head = f"{prefix}{_where(finding)}: {finding.code}: "
    tail = f" Fix: {finding.fix}" if finding.fix else ""
    message = finding.message.rstrip(".") + "."
    if limit is None:
        return head + message + tail
    room = limit - len(head) - len(tail)
    if len(message) > room:
        message = message[: max(room - len(ELLIPSIS), 0)].rstrip() + ELLIPSIS
    text = head + message + tail
    return text if len(text) <= limit else text[: limit - len(ELLIPSIS)] + ELLIPSIS


def _size(warnings: Sequence[str]) -> int:
    return sum(len(warning) + HEADER_OVERHEAD for warning in warnings)


def warnings_for(findings: Sequence[tuple[Finding, str]]) -> tuple[str, ...]:
    """Admission warnings for (finding, prefix) pairs: whole when they fit the API server's budget, else each
    shortened to MAX_WARNING characters, and as many as then fit."""
    whole = [describe_warning(finding, prefix) for finding, prefix in findings]
    if _size(whole) <= MAX_WARNINGS_TOTAL:
        return tuple(whole)
    kept: list[str] = []
    for finding, prefix in findings:
        short = describe_warning(finding, prefix, MAX_WARNING)
        if _size([*kept, short]) > MAX_WARNINGS_TOTAL:
            break
        kept.append(short)
    return tuple(kept)


def _text(value: Any) -> str:
    # Only strings, cut to a Kubernetes name's 253 characters: formatting whatever a direct caller sends (a list
    # nested 1,000 deep) raised RecursionError, and a megabyte name made a megabyte message.
    return value[:253] if isinstance(value, str) else ""


def _name(document: Mapping[str, Any]) -> str:
    metadata = document.get("metadata")
    if not isinstance(metadata, Mapping):
        return "LlamaDeployment"
    name = _text(metadata.get("name")) or _text(metadata.get("generateName"))
    namespace = _text(metadata.get("namespace"))
    return f"LlamaDeployment {namespace}/{name}" if namespace else f"LlamaDeployment {name}".rstrip()


def _refusal(document: Mapping[str, Any], errors: Sequence[Finding]) -> str:
    count = f"{len(errors)} error finding" + ("s" if len(errors) > 1 else "")
    lines = [f"{_name(document)} refused ({count}; `llama-operator validate` reports the same):"]
    lines += [f"- {describe_error(finding)}" for finding in errors]
    return "\n".join(lines)


def _spec_unchanged(new: Mapping[str, Any], old: Mapping[str, Any] | None) -> bool:
    return old is not None and new.get("spec") == old.get("spec")


def _being_deleted(new: Mapping[str, Any]) -> bool:
    metadata = new.get("metadata")
    return isinstance(metadata, Mapping) and bool(metadata.get("deletionTimestamp"))


def decide(
    operation: str | None,
    new: object,
    old: Mapping[str, Any] | None = None,
    knowledge: Knowledge | None = None,
) -> Decision:
    """Decide one admission request for a LlamaDeployment. Never raises."""
    if operation not in ("CREATE", "UPDATE"):
        return Decision(True)  # DELETE and CONNECT carry nothing to validate
    if new is None:
        return Decision(False, "the admission request carries no object to validate", code=400)
    if not isinstance(new, Mapping):
        # Not an object at all (a list, a string): refused with validate's not_an_object finding, like any other.
        return Decision(False, _refusal({}, validate(new, knowledge).errors), code=DENIED_CODE)
    # status is the operator's own, never the user's to get right; it is not validated.
    result = validate({key: value for key, value in new.items() if key != "status"}, knowledge)
    warned = [(finding, "") for finding in result.findings if finding.severity == "warning"]
    if operation == "UPDATE" and (_spec_unchanged(new, old) or _being_deleted(new)):
        stored = [(finding, "stored spec, not enforced: ") for finding in result.errors]
        return Decision(True, warnings=warnings_for(stored + warned))
    if result.valid:
        return Decision(True, warnings=warnings_for(warned))
    return Decision(False, _refusal(new, result.errors), warnings_for(warned), DENIED_CODE)


def respond(review: Mapping[str, Any], knowledge: Knowledge | None = None) -> dict[str, Any]:
    """An ``admission.k8s.io/v1`` AdmissionReview response for a request, with ``decide``'s decision.

    kopf builds this envelope itself when it serves the handlers; this function is the same decision for any
    other server, and the reference the unit tests hold the envelope to.
    """
    request = review.get("request")
    request = request if isinstance(request, Mapping) else {}
    new, old = request.get("object"), request.get("oldObject")
    decision = decide(request.get("operation"), new, old if isinstance(old, Mapping) else None, knowledge)
    response: dict[str, Any] = {"uid": request.get("uid", ""), "allowed": decision.allowed}
    if decision.warnings:
        response["warnings"] = list(decision.warnings)
    if not decision.allowed:
        response["status"] = {"code": decision.code, "message": decision.message}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
