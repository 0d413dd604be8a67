"""The chart's operator run as a local process with exactly the chart's identity and arguments (KWOK fakes the
operator pod, so the code runs here): a kubeconfig holding only a token of the chart's ServiceAccount, so every
request is allowed or refused by the chart's RBAC alone, and how such a refusal shows in the operator's log."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import yaml

from tests.integration.conftest import Sandbox
from tests.integration.operator_process import OperatorProcess

# How an authorization refusal shows in the operator's log (kopf's and the kubernetes client's wording).
REFUSED = re.compile(r"\b403\b|[Ff]orbidden|Not enough permissions")


def token_kubeconfig(sandbox: Sandbox, namespace: str, account: str, path: Path) -> Path:
    token = sandbox.kubectl("create", "token", account, "-n", namespace, "--duration=1h").strip()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "sandbox",
                "cluster": {
                    "server": f"https://127.0.0.1:{sandbox.state.ports.apiserver}",
                    "certificate-authority": str(sandbox.layout.pki / "ca.crt"),
                },
            }
        ],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": "sandbox", "user": account, "namespace": namespace}}],
        "current-context": account,
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def chart_operator(sandbox: Sandbox, chart_args: Sequence[str], name: str, kubeconfig: Path) -> OperatorProcess:
    """The operator with the chart container's args (``run`` and its flags) verbatim but for the listen addresses
    and ports, which OperatorProcess moves to free loopback ports."""
    command, *flags = chart_args
    assert command == "run", chart_args
    return OperatorProcess(sandbox, None, name, args=flags, kubeconfig=kubeconfig)


def refusals(log: str) -> list[str]:
    """The log's lines that say a request was forbidden (not the process's own command lines)."""
    return [line for line in log.splitlines() if REFUSED.search(line) and not line.startswith("=== ")]
