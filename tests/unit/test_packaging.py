"""What ships: the operator's wheel, built offline from exactly what the image's build stage copies, holds the
operator and its CLI and nothing of the development sandbox (e2e/llamaops_sandbox, its own package)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.unit.test_dockerfile import ROOT, ignored, parse, pins

SANDBOX_FILES = ("e2e/pyproject.toml", "e2e/llamaops_sandbox/cli.py", "e2e/llamaops_sandbox/cluster.py")


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def copied_sources(root: Path) -> list[str]:
    """The build-context paths the Dockerfile's COPY instructions name (not those copied between stages)."""
    _, instructions = parse((root / "Dockerfile").read_text())
    return [word for ins, rest in instructions if ins == "COPY" and "--from" not in rest for word in rest.split()[:-1]]


def build_context(root: Path, into: Path) -> Path:
    """Copy what the image build sees: the COPY sources, less what .dockerignore leaves out."""
    patterns = dockerignore()
    for source in copied_sources(root):
        top = root / source
        for path in [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file()):
            relative = path.relative_to(root).as_posix()
            if not ignored(patterns, relative):
                (into / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, into / relative)
    return into


def build_wheel(context: Path, out: Path) -> Path:
    # The Dockerfile's command: the pinned backend (installed by the dev extra), no index, no isolation.
    offline = ["--no-deps", "--no-build-isolation", "--no-index"]
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--quiet", *offline, "--wheel-dir", str(out), str(context)]
    subprocess.run(pip_wheel, check=True, timeout=300)
    (wheel,) = out.glob("llama_operator-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    return build_wheel(build_context(ROOT, tmp / "context"), tmp / "out")


def test_the_build_backend_is_pinned_alike_for_the_operator_its_tests_and_the_sandbox() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    sandbox = tomllib.loads((ROOT / "e2e" / "pyproject.toml").read_text())
    backend = pins(project["build-system"]["requires"])
    assert pins(sandbox["build-system"]["requires"]) == backend
    dev = pins(project["project"]["optional-dependencies"]["dev"])
    assert dev["setuptools"] == backend["setuptools"]


def test_the_image_copies_nothing_of_e2e() -> None:
    assert all(not source.startswith(("e2e", ".", "*")) for source in copied_sources(ROOT)), copied_sources(ROOT)
    for path in SANDBOX_FILES:
        assert (ROOT / path).is_file(), path  # the sandbox is where this test expects it
        assert ignored(dockerignore(), path), f"{path} is in the image's build context"


def test_the_wheel_holds_no_sandbox(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "llama_operator/cli/__init__.py" in names
    assert "llama_operator/knowledge/data/models.yaml" in names
    assert [n for n in names if "sandbox" in n.lower() or n.startswith("e2e/")] == []
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "llama-operator = llama_operator.cli:main" in scripts
    assert "llamaops-sandbox" not in scripts


def test_the_wheel_imports_its_cli_without_the_checkout(wheel: Path, tmp_path: Path) -> None:
    zipfile.ZipFile(wheel).extractall(tmp_path)
    # PYTHONPATH comes before the virtualenv's editable install, so the wheel's copy is the one imported; the
    # dependencies (kopf, pydantic ...) still come from the virtualenv.
    probe = "import llama_operator, llama_operator.cli as cli\nprint(llama_operator.__file__)\ncli.main(['--help'])\n"
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    ran = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60, check=False
    )
    assert ran.returncode == 0, ran.stderr
    origin, *usage = ran.stdout.splitlines()
    assert Path(origin).is_relative_to(tmp_path)
    # A subcommand's line is indented four spaces; a wrapped description, more.
    commands = [line.split()[0] for line in usage if line.startswith("    ") and not line.startswith("     ")]
    assert commands == ["run", "validate", "crd", "plugin-facts"]
    assert "sandbox" not in "\n".join(usage)
