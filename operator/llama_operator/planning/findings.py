"""The finding: one stable code, a severity, the spec field concerned, what is wrong and how to fix it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning", "info"]
SEVERITY_ORDER: dict[str, int] = {"error": 0, "warning": 1, "info": 2}


@dataclass(frozen=True, slots=True)
class Finding:
    """One validation result: a stable snake_case code, severity, spec field path, message and fix."""

    code: str
    severity: Severity
    field: str
    message: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        """The status/JSON form (camelCase keys match the CRD's status.findings items)."""
        return {
            "code": self.code,
            "severity": self.severity,
            "field": self.field,
            "message": self.message,
            "fix": self.fix,
        }


def tokens(value: int) -> str:
    """Thousands separators make token counts readable in messages."""
    return f"{value:,}"
