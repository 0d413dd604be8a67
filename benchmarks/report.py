"""Machine-readable results: each benchmark writes its figures with ``--json PATH``; benchmarks/run_all.py collects
them into benchmarks/README.md. A figure carries its target and the baseline measured in the same run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any


@dataclasses.dataclass(frozen=True, slots=True)
class Figure:
    name: str  # what was measured, e.g. "convergence, N=1,000"
    value: float
    unit: str  # "s", "ms", "specs/s", "x", "MB", ...
    target: str = ""  # as the issue states it, e.g. "<= 1.5x"; empty when the figure has none
    met: bool | None = None  # None: no target
    baseline: str = ""  # the comparison measured in the same run, with its value, e.g. "kubectl floor 242.8 s"


def write(path: Path | None, benchmark: str, figures: list[Figure], **context: Any) -> None:
    """Write ``{"benchmark", "figures", "context"}`` to ``path`` (nothing when None)."""
    if path is None:
        return
    document = {"benchmark": benchmark, "figures": [dataclasses.asdict(f) for f in figures], "context": context}
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def read(path: Path) -> tuple[str, list[Figure], dict[str, Any]]:
    document = json.loads(path.read_text(encoding="utf-8"))
    return document["benchmark"], [Figure(**f) for f in document["figures"]], document.get("context", {})
