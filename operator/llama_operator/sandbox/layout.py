"""Where the sandbox keeps its binaries and its run state (pure: paths only, nothing is created here)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# Repository root, for an editable install or a checkout on sys.path: operator/llama_operator/sandbox/layout.py.
REPO_ROOT = Path(__file__).resolve().parents[3]


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
    repo: Path = REPO_ROOT

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
    def cuda_fixtures(self) -> Path:
        return self.repo / "e2e" / "fixtures" / "cuda"

    @property
    def gomodcache(self) -> Path:
        """The Go module cache the build fills (scripts/lib.sh sets GOMODCACHE to this default)."""
        return Path(os.environ.get("GOMODCACHE", str(self.cache / "go" / "mod")))

    def kwok_upstream_stages(self, kwok_version: str) -> list[Path]:
        """KWOK's own node and pod lifecycle stages, read from the Go module cache the build filled."""
        stage = self.gomodcache / f"sigs.k8s.io/kwok@{kwok_version}" / "kustomize" / "stage"
        return [
            stage / "node" / "fast" / "node-initialize.yaml",
            stage / "node" / "heartbeat-with-lease" / "node-heartbeat-with-lease.yaml",
            stage / "pod" / "fast" / "pod-ready.yaml",
            stage / "pod" / "fast" / "pod-complete.yaml",
            stage / "pod" / "fast" / "pod-delete.yaml",
        ]

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"
