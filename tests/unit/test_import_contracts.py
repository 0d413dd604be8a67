"""The import contracts in pyproject.toml fail when they should: a pure layer importing the cluster client or a
process runner, an import pointing up, a layer package renamed. Each case runs the real `lint-imports` on a copy of
the package with one change; the unchanged copy passes, so a failure is the change's and not the harness's."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "operator" / "llama_operator"


def _add_import(module: str, statement: str) -> Callable[[Path], None]:
    def change(root: Path) -> None:
        path = root / "llama_operator" / module
        path.write_text(path.read_text() + f"\n{statement}\n")

    return change


def _rename(package: str, to: str) -> Callable[[Path], None]:
    def change(root: Path) -> None:
        (root / "llama_operator" / package).rename(root / "llama_operator" / to)

    return change


def _lint(tmp_path: Path, change: Callable[[Path], None] | None) -> subprocess.CompletedProcess[str]:
    root = tmp_path / "src"
    shutil.copytree(PACKAGE, root / "llama_operator", ignore=shutil.ignore_patterns("__pycache__"))
    if change is not None:
        change(root)
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    # The copy comes first on the path, before the editable install of the checkout.
    env = {**os.environ, "PYTHONPATH": str(root)}
    command = [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"]
    return subprocess.run(
        [*command, "--config", str(tmp_path / "pyproject.toml"), "--no-cache"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_unchanged_package_keeps_every_contract(tmp_path: Path) -> None:
    result = _lint(tmp_path, None)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("change", "broken"),
    [
        (_add_import("planning/memory.py", "import kubernetes"), "Pure layers do no cluster or process I/O BROKEN"),
        (_add_import("render/deployment.py", "import kopf"), "Pure layers do no cluster or process I/O BROKEN"),
        (_add_import("health/classify.py", "import subprocess"), "Pure layers do no cluster or process I/O BROKEN"),
        (_add_import("desired/state.py", "import kubernetes"), "Pure layers do no cluster or process I/O BROKEN"),
        (_add_import("api/spec.py", "from llama_operator.planning import validate"), "Layers: "),
        (_rename("render", "rendering"), "Missing layer 'llama_operator.render'"),
    ],
    ids=[
        "planning-imports-kubernetes",
        "render-imports-kopf",
        "health-runs-processes",
        "desired-imports-kubernetes",
        "api-imports-up",
        "rename",
    ],
)
def test_a_contract_breaks(tmp_path: Path, change: Callable[[Path], None], broken: str) -> None:
    result = _lint(tmp_path, change)
    assert result.returncode != 0, result.stdout
    assert broken in result.stdout + result.stderr
