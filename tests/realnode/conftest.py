"""The real-node tier: the sandbox with `--real-node` (a real kubelet, containerd, runc, CNI bridge, kube-proxy and a
local registry holding the images scripts/images-build.sh built from the repository's Dockerfiles).

scripts/test.sh brings it up and builds the images before this tier runs. Without a real node the tier fails
rather than skips: a tier that collects nothing proves nothing.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client, config

from llamaops_sandbox import cluster
from llamaops_sandbox import realnode_config as rc
from llamaops_sandbox.layout import Layout, default_cache
from tests.engine_venv import engine_python
from tests.helm import helm

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "llama-operator"
GROUP, VERSION, PLURAL = "llamaops.dev", "v1alpha1", "llamadeployments"
MODEL_DIR = "tiny-llama4"


@dataclass
class RealSandbox:
    layout: Layout
    state: cluster.State
    api: client.ApiClient

    @property
    def registry(self) -> str:
        return rc.registry_address(self.state.ports.registry)

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.state.ports.prometheus}"

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        return cluster.kubectl(self.layout, *args, stdin=stdin)

    def helm(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return helm(self.layout, *args, check=check, timeout=timeout)


@pytest.fixture(scope="session")
def sandbox() -> Iterator[RealSandbox]:
    layout = Layout(default_cache())
    state = cluster.read_state(layout)
    if state is None or not state.real_node:
        raise pytest.UsageError(
            "tests/realnode needs the sandbox with its real node: llamaops-sandbox up --real-node, then "
            'scripts/images-build.sh --registry "$LLAMAOPS_REGISTRY" (scripts/test.sh does both)'
        )
    api = config.new_client_from_config(config_file=str(layout.kubeconfig))
    try:
        yield RealSandbox(layout, state, api)
    finally:
        api.close()


@pytest.fixture(scope="session")
def tiny_model(sandbox: RealSandbox) -> Path:
    return write_tiny_model(sandbox.layout)


def write_tiny_model(layout: Layout) -> Path:
    """tests/engine's tiny random Llama-4, written once (by transformers, in the engine venv) into the node's
    model store, which the tests mount through a PersistentVolume. Rewritten when its generator changes."""
    generator = ROOT / "tests" / "engine" / "tiny_llama4.py"
    digest = hashlib.sha256(generator.read_bytes()).hexdigest()
    target = rc.paths(layout)["models"] / MODEL_DIR
    stamp = target / ".generator-sha256"
    if not (stamp.exists() and stamp.read_text() == digest):
        subprocess.run(
            [
                str(engine_python()),
                "-c",
                "import sys; from pathlib import Path; from tests.engine.tiny_llama4 import write_tiny_llama4; "
                "write_tiny_llama4(Path(sys.argv[1]))",
                str(target),
            ],
            cwd=ROOT,
            check=True,
            timeout=600,
        )
        stamp.write_text(digest)
    # The serving container runs as UID 2000: the store must be readable by anyone.
    for path in [target.parent, target, *target.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


def model_volume(sandbox: RealSandbox, namespace: str, claim: str) -> None:
    """A hostPath PersistentVolume of the node's model store, bound to ``claim`` in ``namespace``."""
    store = rc.paths(sandbox.layout)["models"]
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"{namespace}-{claim}", "labels": {"llamaops.dev/test": "realnode"}},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadOnlyMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "claimRef": {"namespace": namespace, "name": claim},
            "hostPath": {"path": str(store), "type": "Directory"},
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": rc.REAL_NODE_LABEL, "operator": "In", "values": ["true"]}]}
                    ]
                }
            },
        },
    }
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": claim, "namespace": namespace},
        "spec": {
            "accessModes": ["ReadOnlyMany"],
            "storageClassName": "",
            "volumeName": pv["metadata"]["name"],
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    sandbox.kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": [pv, pvc]}))


def operator_image(sandbox: RealSandbox) -> dict[str, str]:
    """The chart's image values for the operator image scripts/images-build.sh pushed last: pinned by its digest,
    since a rebuild moves the tag."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    digest = (sandbox.layout.cache / "images" / "stamps" / "operator.digest").read_text().strip()
    return {
        "registry": sandbox.registry,
        "repository": "llamaops/llama-operator",
        "tag": str(project["version"]),
        "digest": digest,
    }
