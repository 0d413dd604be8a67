"""The sandbox's own helm binary against the sandbox's cluster, for the integration and real-node tiers."""

from __future__ import annotations

import subprocess
from typing import Any

import yaml

from llamaops_sandbox.layout import Layout


def helm(
    layout: Layout, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run helm; with ``check``, a failure fails the test showing helm's output."""
    argv = [str(layout.bin / "helm"), f"--kubeconfig={layout.kubeconfig}", *args]
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    if check:
        assert proc.returncode == 0, f"helm {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def documents(rendered: str) -> list[dict[str, Any]]:
    """The non-empty documents of `helm template`'s output."""
    return [doc for doc in yaml.safe_load_all(rendered) if doc]
