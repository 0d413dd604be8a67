"""The integration tier: every test runs against the real sandbox (llamaops_sandbox).

The session fixture brings the sandbox up once, or reuses one that is already running, and leaves it running
(scripts/test.sh takes it down when it started it). Each test gets its own namespace.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from llamaops_sandbox import cluster
from llamaops_sandbox.layout import Layout, default_cache
from tests.helm import helm

pytestmark = pytest.mark.integration


@dataclass
class Sandbox:
    layout: Layout
    state: cluster.State
    api: client.ApiClient

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.state.ports.prometheus}"

    def kubectl(self, *args: str) -> str:
        return cluster.kubectl(self.layout, *args)

    def helm(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return helm(self.layout, *args, stdin=stdin, check=check)

    def try_kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """kubectl against the sandbox, its outcome returned rather than raised (tests of refusals)."""
        return cluster.run_kubectl(self.layout, *args, stdin=stdin, timeout=60)

    def prometheus_query(self, promql: str) -> list[dict[str, Any]]:
        url = f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 90.0, interval: float = 0.5) -> Any:
    """Poll `probe` until it returns something truthy; fail naming `what` and the last value otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last value: {last!r}")


def not_found_is_none(call: Any, *args: Any) -> Any:
    """``call(*args)``, or None when the API server answers 404 (absent, or already deleted)."""
    try:
        return call(*args)
    except ApiException as error:
        if error.status == 404:
            return None
        raise


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    layout = Layout(default_cache())
    state, _reused = cluster.up(layout, layout.default_shape, lambda m: print(f"[sandbox] {m}", file=sys.stderr))
    # The tests run their own operators (and need the operator metrics port Prometheus scrapes).
    if cluster.stop_demo_operator(layout):
        print("[sandbox] stopped the operator scripts/demo.sh left running", file=sys.stderr)
    demo = cluster.kubectl(layout, "get", "namespaces", "-l", "llamaops.dev/demo=true", "-o", "name").split()
    if demo:
        # The demo's GPU pods would leave the tests too few fake H100s.
        cluster.kubectl(layout, "delete", "--wait=true", "--timeout=120s", *demo)
        print(f"[sandbox] deleted the demo's {' '.join(demo)}", file=sys.stderr)
    api = config.new_client_from_config(config_file=str(layout.kubeconfig))
    try:
        yield Sandbox(layout, state, api)
    finally:
        api.close()


def make_namespace(sandbox: Sandbox, base: str) -> str:
    core = client.CoreV1Api(sandbox.api)
    name = f"{base[:40].strip('-')}-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name, "labels": {"llamaops.dev/test": "integration"}}})
    # Pods are refused until the service-account controller has made the namespace's default account.
    wait_for("default service account", lambda: core.list_namespaced_service_account(name).items, timeout=60)
    return name


@pytest.fixture
def namespace(sandbox: Sandbox, request: pytest.FixtureRequest) -> Iterator[str]:
    name = make_namespace(sandbox, request.node.name.lower().replace("_", "-"))
    yield name
    client.CoreV1Api(sandbox.api).delete_namespace(name)


def install_crd(sandbox: Sandbox) -> str:
    """The LlamaDeployment CRD from crds/, applied and Established."""
    crd = sandbox.layout.repo / "crds" / "llamadeployments.llamaops.dev.yaml"
    sandbox.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
    sandbox.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/llamadeployments.llamaops.dev")
    return "llamadeployments.llamaops.dev"


def running_sandbox() -> Sandbox | None:
    """The shared sandbox if it runs (benchmarks that measure in it), with the CRD installed; None otherwise."""
    layout = Layout(default_cache())
    state = cluster.read_state(layout)
    if state is None:
        return None
    sandbox = Sandbox(layout, state, config.new_client_from_config(config_file=str(layout.kubeconfig)))
    install_crd(sandbox)
    return sandbox


@pytest.fixture(scope="session")
def llama_crd(sandbox: Sandbox) -> str:
    return install_crd(sandbox)


def gpu_deployment(
    name: str,
    gpus: int,
    product: str,
    *,
    image: str = "vllm/vllm-openai:v0.8.4",
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A plain one-replica Deployment whose pod asks for `gpus` fake GPUs of `product` (pod annotations optional,
    e.g. the KWOK crash stage's llamaops.dev/fake-crash)."""
    labels = {"app": name}
    template_meta: dict[str, Any] = {"labels": labels}
    if annotations is not None:
        template_meta["annotations"] = annotations
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": template_meta,
                "spec": {
                    "nodeSelector": {"nvidia.com/gpu.product": product},
                    "containers": [
                        {"name": "vllm", "image": image, "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}
                    ],
                },
            },
        },
    }
