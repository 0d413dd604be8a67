"""Counts of a fuzz run, printed at its end (pytest -s) and put into its assertion messages."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Tally:
    name: str
    objects: int = 0
    accepted: int = 0
    rejected: int = 0
    codes: Counter[str] = field(default_factory=Counter)  # rejected objects per finding code they carry
    other: Counter[str] = field(default_factory=Counter)  # anything else worth a count (HTTP status, source)

    def accept(self) -> None:
        self.objects += 1
        self.accepted += 1

    def reject(self, codes: set[str] | list[str] | tuple[str, ...]) -> None:
        self.objects += 1
        self.rejected += 1
        self.codes.update(set(codes))

    def report(self, top: int = 12) -> str:
        lines = [f"{self.name}: {self.objects} objects, {self.accepted} accepted, {self.rejected} rejected"]
        if self.codes:
            lines.append("  rejected by code: " + ", ".join(f"{c} {n}" for c, n in self.codes.most_common(top)))
            if len(self.codes) > top:
                lines[-1] += f" (+{len(self.codes) - top} more codes)"
        for key, count in sorted(self.other.items()):
            lines.append(f"  {key}: {count}")
        return "\n".join(lines)
