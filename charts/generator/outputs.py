"""Every file the generator owns, with its content: the chart's CRD copy, dashboards, rules and the values reference
of its README."""

from __future__ import annotations

from pathlib import Path

from charts.generator import alerts, dashboards, values_reference

from llama_operator.api.crd import CRD_FILE, crd_yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "llama-operator"
CRD = CHART / "files" / "crds" / CRD_FILE
DASHBOARDS = CHART / "files" / "dashboards"
RULES = CHART / "files" / "alerts" / alerts.FILE
README = CHART / "README.md"


def generated() -> dict[Path, str]:
    """Path -> content. The CRD is the one `llama-operator crd` writes to crds/, byte for byte; the README keeps its
    hand-written text around the generated values reference."""
    files = {CRD: crd_yaml(), RULES: alerts.rules_yaml()}
    files[README] = values_reference.readme(README.read_text(encoding="utf-8"), CHART)
    files.update({DASHBOARDS / name: text for name, text in dashboards.dashboards().items()})
    return files


def stale(files: dict[Path, str]) -> list[Path]:
    """The files that are missing or differ, plus generated-folder files nothing generates any more."""
    out = [path for path, text in files.items() if not path.exists() or path.read_text(encoding="utf-8") != text]
    out += sorted(p for p in DASHBOARDS.glob("*.json") if p not in files)
    return out


def write(files: dict[Path, str]) -> list[Path]:
    changed = stale(files)
    for path in changed:
        if path in files:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(files[path], encoding="utf-8")
        else:
            path.unlink()
    return changed
