"""The patched image's crash-report signatures (data/crash_signatures.yaml): what its report line says, the
pattern the plugin matches, and the crash classifier's signature for it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from llama_operator.knowledge.catalog import _read


@dataclass(frozen=True, slots=True)
class ReportSignature:
    name: str
    pattern: str
    ignore_case: bool
    # The classifier's signature (health.classify.Signature): checked there, the layer that defines them.
    classifier: str


_NAME = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")


def report_signature_from_dict(data: Mapping[str, Any]) -> ReportSignature:
    name = str(data.get("name", ""))
    if not _NAME.fullmatch(name):
        raise ValueError(f"crash signature {name!r}: the name must be snake_case")
    pattern = str(data.get("pattern", ""))
    ignore_case = data.get("ignore_case")
    if not isinstance(ignore_case, bool):
        raise ValueError(f"crash signature {name!r}: ignore_case must be true or false")
    try:
        re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    except re.error as error:
        raise ValueError(f"crash signature {name!r}: pattern is not a regular expression: {error}") from error
    if not pattern:
        raise ValueError(f"crash signature {name!r}: pattern is empty")
    return ReportSignature(name, pattern, ignore_case, str(data.get("classifier", "")))


def report_signatures_from(document: Mapping[str, Any]) -> tuple[ReportSignature, ...]:
    signatures = tuple(report_signature_from_dict(entry) for entry in document["signatures"])
    names = [signature.name for signature in signatures]
    if len(set(names)) != len(names) or "unknown" in names:
        raise ValueError(f"crash signatures: names must be unique and not 'unknown' (the fallback): {names}")
    return signatures


@cache
def report_signatures() -> tuple[ReportSignature, ...]:
    """The signatures in match order (the plugin's first match wins)."""
    return report_signatures_from(_read("crash_signatures.yaml"))
