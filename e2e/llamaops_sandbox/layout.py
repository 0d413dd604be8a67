"""Where the sandbox keeps its binaries and its run state, and which checkout it runs from (nothing is created here)."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

from llamaops_sandbox import pins
from llamaops_sandbox.processes import SandboxError

# What marks the checkout: the sandbox's Go module, which its binaries and pinned versions come from.
REPO_MARKER = Path("e2e") / "go.mod"


@functools.cache
def find_repo() -> Path:
    """The checkout the sandbox runs from: $LLAMAOPS_REPO, else the nearest directory above this package that
    holds e2e/go.mod (an editable install of e2e/pyproject.toml). The sandbox reads its shapes, stages, fixtures,
    pinned versions and build script from there, so an install without a checkout cannot run it."""
    if explicit := os.environ.get("LLAMAOPS_REPO"):
        repo = Path(explicit).resolve()
        if not (repo / REPO_MARKER).is_file():
            raise SandboxError(f"LLAMAOPS_REPO={explicit} is not a llama-operator checkout: no {REPO_MARKER} there")
        return repo
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / REPO_MARKER).is_file():
            return parent
    raise SandboxError(
        f"no llama-operator checkout above {here.parent} (looked for {REPO_MARKER}): install the sandbox editable "
        "from a checkout (`pip install -e e2e/`, as scripts/lib.sh does) or set LLAMAOPS_REPO to the checkout"
    )


def default_cache() -> Path:
    """The cache scripts/lib.sh uses: $LLAMAOPS_CACHE, else $XDG_CACHE_HOME/llama-operator, else ~/.cache/..."""
    if explicit := os.environ.get("LLAMAOPS_CACHE"):
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "llama-operator"


@dataclass(frozen=True)
class Layout:
    """Paths of one sandbox. Binaries are shared by every run; the run directory belongs to one sandbox."""

    cache: Path
    repo: Path = field(default_factory=find_repo)

    @property
    def bin(self) -> Path:
        return self.cache / "sandbox" / "bin"

    @property
    def run(self) -> Path:
        return self.cache / "sandbox" / "run"

    @property
    def pki(self) -> Path:
        return self.run / "pki"

    @property
    def logs(self) -> Path:
        return self.run / "logs"

    @property
    def etcd_data(self) -> Path:
        return self.run / "etcd"

    @property
    def prometheus_data(self) -> Path:
        return self.run / "prometheus"

    @property
    def state_file(self) -> Path:
        return self.run / "state.json"

    @property
    def demo_operator_pid(self) -> Path:
        """The operator scripts/demo.sh leaves running; `down` stops it with the sandbox."""
        return self.run / "operator-demo.pid"

    @property
    def kubeconfig(self) -> Path:
        return self.run / "kubeconfig"

    @property
    def build_script(self) -> Path:
        return self.repo / "scripts" / "sandbox-build.sh"

    @property
    def default_shape(self) -> Path:
        return self.repo / "e2e" / "nodes.yaml"

    @property
    def crash_stage(self) -> Path:
        return self.repo / "e2e" / "kwok" / "pod-crash-loop.yaml"

    @property
    def image_pull_stage(self) -> Path:
        return self.repo / "e2e" / "kwok" / "pod-image-pull.yaml"

    @property
    def cuda_fixtures(self) -> Path:
        return self.repo / "e2e" / "fixtures" / "cuda"

    @property
    def gomodcache(self) -> Path:
        """The Go module cache the build fills (scripts/lib.sh sets GOMODCACHE to this default)."""
        return Path(os.environ.get("GOMODCACHE", str(self.cache / "go" / "mod")))

    def module_dir(self, pin: pins.Pin) -> Path:
        """A pinned module's source in the Go module cache (filled by scripts/sandbox-build.sh)."""
        return self.gomodcache / f"{pin.module}@{pins.version(self.repo, pin)}"

    def kwok_upstream_stages(self) -> list[Path]:
        """KWOK's own node and pod lifecycle stages, read from the Go module cache the build filled."""
        stage = self.module_dir(pins.KWOK) / "kustomize" / "stage"
        return [
            stage / "node" / "fast" / "node-initialize.yaml",
            stage / "node" / "heartbeat-with-lease" / "node-heartbeat-with-lease.yaml",
            stage / "pod" / "fast" / "pod-ready.yaml",
            stage / "pod" / "fast" / "pod-complete.yaml",
            stage / "pod" / "fast" / "pod-delete.yaml",
        ]

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"
