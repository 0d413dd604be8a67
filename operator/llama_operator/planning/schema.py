"""Turns pydantic validation errors into findings with stable codes and spec field paths."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError

from llama_operator.knowledge.describe import describe
from llama_operator.planning.findings import Finding

# pydantic error type -> (code, fix template). Unlisted types fall back to invalid_value.
_CODES: dict[str, tuple[str, str]] = {
    "missing": ("missing_field", "add the field"),
    "extra_forbidden": ("unknown_field", "remove the field or correct its spelling (field names are camelCase)"),
    "literal_error": ("invalid_value", "use one of the allowed values"),
    "enum": ("invalid_value", "use one of the allowed values"),
    "greater_than": ("out_of_range", "use a larger value"),
    "greater_than_equal": ("out_of_range", "use a larger value"),
    "less_than": ("out_of_range", "use a smaller value"),
    "less_than_equal": ("out_of_range", "use a smaller value"),
    "string_too_short": ("out_of_range", "use a longer value"),
    "string_too_long": ("out_of_range", "use a shorter value"),
    "too_long": ("out_of_range", "use fewer items"),
    "too_short": ("out_of_range", "use more items"),
    "string_pattern_mismatch": ("invalid_format", "match the documented format"),
}
_TYPE_SUFFIXES = ("_type", "_parsing", "_from_float", "finite_number")
_TYPE_KINDS = frozenset({"model_type", "dict_type", "list_type", "model_attributes_type"})


def field_path(loc: Sequence[Any], prefix: str = "") -> str:
    """('spec', 'engine', 'tensorParallelSize') -> spec.engine.tensorParallelSize; list indices as [i]."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path


def findings_from_validation_error(error: ValidationError, prefix: str = "") -> list[Finding]:
    findings: list[Finding] = []
    for detail in error.errors(include_url=False):
        kind = str(detail.get("type", ""))
        code, fix = _CODES.get(kind, ("", ""))
        if not code:
            if kind.endswith(_TYPE_SUFFIXES) or kind in (
                "model_type",
                "dict_type",
                "list_type",
                "model_attributes_type",
            ):
                code, fix = "invalid_type", "use a value of the documented type"
            else:
                code, fix = "invalid_value", "see the field's description (kubectl explain llama.spec)"
        path = field_path(detail.get("loc", ()), prefix)
        message = str(detail.get("msg", "invalid"))
        if kind != "missing" and "input" in detail and kind != "extra_forbidden":
            message = f"{message} (got {describe(detail['input'])})"
        findings.append(Finding(code, "error", path, message, fix))
    return findings


def dedupe(findings: Iterable[Finding]) -> list[Finding]:
    seen: set[tuple[str, str]] = set()
    out: list[Finding] = []
    for finding in findings:
        key = (finding.code, finding.field)
        if key not in seen:
            seen.add(key)
            out.append(finding)
    return out
