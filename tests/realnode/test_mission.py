"""The whole mission chain on the real node: the chart's operator running in a pod, a real vLLM engine (CPU build)
in the container the operator rendered, a real crash, a real repair.

1. The node is real: a kubelet of the pinned Kubernetes with containerd, advertising nvidia.com/gpu.
2. `helm install` of charts/llama-operator with the operator image built from ./Dockerfile: its pod runs on the real
   node with the chart's ServiceAccount, RBAC, webhook Service and certificates and probes; `helm test` passes.
3. A LlamaDeployment of the tiny random Llama-4 on the unpatched image (`patched: false`, mapped by the operator's
   image rewrites onto the CPU build in the local registry) becomes Available from vLLM's own /health, and a
   completion through its Service answers.
4. A request with out-of-vocabulary token ids kills the engine for real; the operator classifies the death as
   out_of_vocab_token_ids and switches to the patched image; the same request then gets a 400 while the server
   keeps serving. vLLM's /metrics of that pod are in Prometheus, and every panel query of the chart's dashboard
   returns data for it over the test's time range (as Grafana asks).
5. `helm uninstall` leaves nothing that blocks writes.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from llamaops_sandbox import pins
from llamaops_sandbox import realnode_config as rc
from tests.integration.conftest import make_namespace, wait_for
from tests.realnode import chain
from tests.realnode.conftest import (
    CHART,
    GROUP,
    PLURAL,
    ROOT,
    VERSION,
    RealSandbox,
    model_volume,
    operator_image,
)

pytestmark = pytest.mark.realnode

DASHBOARD = CHART / "files" / "dashboards" / "llama-serving.json"
# The first pull of the multi-GiB CPU image and vLLM's start on a shared 2-core machine.
AVAILABLE_TIMEOUT_S = 900.0


@pytest.fixture(scope="module")
def serving_namespace(sandbox: RealSandbox) -> Iterator[str]:
    name = make_namespace(sandbox, "realnode")
    yield name
    sandbox.kubectl("delete", "namespace", name, "--wait=false")
    sandbox.kubectl("delete", "pv", f"{name}-{chain.CLAIM}", "--ignore-not-found", "--wait=false")


@pytest.fixture(scope="module")
def release(sandbox: RealSandbox, serving_namespace: str) -> Iterator[str]:
    """The chart installed for real; uninstalled at the end, after which nothing may block writes."""
    namespace = chain.install_operator(sandbox, [serving_namespace])
    try:
        yield namespace
    finally:
        left = chain.uninstall_operator(sandbox, namespace)
        assert not left, f"helm uninstall left webhook configurations that refuse writes: {left}"
        # A LlamaDeployment write in the namespace the webhook guarded goes through again.
        example = ROOT / "examples" / "llama31-8b-l40s.yaml"
        out = sandbox.kubectl("create", "--dry-run=server", "-n", serving_namespace, "-f", str(example))
        assert "created (server dry run)" in out, out


def test_the_node_is_real(sandbox: RealSandbox) -> None:
    node = json.loads(sandbox.kubectl("get", "node", rc.NODE_NAME, "-o", "json"))
    info = node["status"]["nodeInfo"]
    assert info["kubeletVersion"] == pins.version(sandbox.layout.repo, pins.KUBERNETES)  # e2e/go.mod
    assert info["containerRuntimeVersion"].startswith("containerd://1.6"), info
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == str(rc.GPU_COUNT)
    assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == rc.GPU_PRODUCT
    assert "kwok.x-k8s.io/node" not in node["metadata"].get("annotations", {})
    ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
    assert ready, node["status"]["conditions"]
    assert ready[0]["status"] == "True", ready


def test_the_charts_operator_runs_on_the_real_node(sandbox: RealSandbox, release: str) -> None:
    core = client.CoreV1Api(sandbox.api)
    pods = core.list_namespaced_pod(release, label_selector="app.kubernetes.io/name=llama-operator").items
    operator_pods = [p for p in pods if not (p.metadata.annotations or {}).get("helm.sh/hook")]
    assert operator_pods, [p.metadata.name for p in pods]
    digest = operator_image(sandbox)["digest"]
    for pod in operator_pods:
        assert pod.spec.node_name == rc.NODE_NAME
        statuses = pod.status.container_statuses or []
        assert statuses, pod.status
        assert all(s.ready for s in statuses), statuses
        assert pod.spec.containers[0].image.startswith(sandbox.registry), pod.spec.containers[0].image
        assert statuses[0].image_id.endswith(digest), statuses[0].image_id
        # A real process: the kubelet reports a container id from containerd and a pod IP from the bridge.
        assert statuses[0].container_id.startswith("containerd://")
        assert pod.status.pod_ip.startswith("10.88."), pod.status.pod_ip
    proc = sandbox.helm("test", chain.RELEASE, "--namespace", release, "--timeout", "5m", "--logs", check=False)
    assert proc.returncode == 0, f"helm test failed:\n{proc.stdout}\n{proc.stderr}"


def test_the_mission_chain_on_a_real_engine(
    sandbox: RealSandbox, release: str, serving_namespace: str, tiny_model: Path
) -> None:
    core = client.CoreV1Api(sandbox.api)
    ns = serving_namespace
    began = time.time()
    model_volume(sandbox, ns, chain.CLAIM)
    client.CustomObjectsApi(sandbox.api).create_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, chain.llama_body(ns, tiny_model)
    )

    def llama() -> dict[str, object]:
        return chain.read_llama(sandbox, ns)

    def serving_pods() -> list[client.V1Pod]:
        return list(core.list_namespaced_pod(ns, label_selector=f"llamaops.dev/deployment={chain.NAME}").items)

    unpatched, patched = chain.unpatched_image(sandbox), chain.patched_image(sandbox)
    wait_for(
        "the LlamaDeployment Available on the unpatched CPU image",
        lambda: chain.available_with(chain.read_llama(sandbox, ns), unpatched),
        timeout=AVAILABLE_TIMEOUT_S,
        interval=2,
    )
    (pod,) = serving_pods()
    (container,) = pod.spec.containers
    assert container.image == unpatched
    assert pod.spec.node_name == rc.NODE_NAME
    # Exactly what the operator rendered runs: the arguments in status are the container's.
    status = chain.read_llama(sandbox, ns)["status"]
    assert container.args == status["effective"]["args"]
    base = chain.service_url(sandbox, ns)
    code, body = chain.complete(base, chain.GOOD_PROMPT)
    assert code == 200, body
    assert body["choices"][0]["finish_reason"] in {"length", "stop"}, body

    # The crash: an out-of-vocabulary id kills the unguarded engine; the container ends for real.
    code, body = chain.complete(base, chain.OOV_PROMPT)
    assert code in {0, 500}, body

    def crash_classified() -> dict[str, object] | None:
        # The crash the remediation acted on stays in status.remediation (status.crashLoop clears on recovery).
        remediation = chain.read_llama(sandbox, ns).get("status", {}).get("remediation") or {}
        crash = remediation.get("crashLoop") or {}
        return crash if crash.get("knownIssue") == "out_of_vocab_token_ids" else None

    crash = wait_for("the crash classified by the operator", crash_classified, timeout=300, interval=1)
    assert crash["source"] in {"PodStatus", "Prometheus"}
    # The real death: vLLM 0.32's server exits 0 once its engine is dead, so the kubelet records no message and
    # the operator read the words from the container's log.
    assert crash["exitCode"] is not None, crash
    assert "index out of range in self" in str(crash["detail"]), crash

    # Repaired: the patched image (the same CPU build plus the plugin), Available again, one pod serving.
    wait_for(
        "the patched image Available",
        lambda: chain.available_with(chain.read_llama(sandbox, ns), patched),
        timeout=AVAILABLE_TIMEOUT_S,
        interval=2,
    )
    (pod,) = wait_for("one serving pod", lambda: serving_pods() if len(serving_pods()) == 1 else None, timeout=300)
    assert pod.spec.containers[0].image == patched
    remediations = chain.read_llama(sandbox, ns)["status"]["remediations"]
    assert remediations, llama()
    assert remediations[-1]["knownIssue"] == "out_of_vocab_token_ids", remediations
    restarts = pod.status.container_statuses[0].restart_count
    code, body = chain.complete(base, chain.OOV_PROMPT)
    assert code == 400, body
    assert str(chain.FATAL_TOKEN_ID) in json.dumps(body), body
    code, body = chain.complete(base, chain.GOOD_PROMPT)
    assert code == 200, body
    pod = core.read_namespaced_pod(pod.metadata.name, ns)
    assert pod.status.container_statuses[0].restart_count == restarts, "the guarded engine restarted"

    _metrics_and_dashboard(sandbox, ns, pod.metadata.name, base, began)


def _metrics_and_dashboard(sandbox: RealSandbox, namespace: str, pod: str, base: str, began: float) -> None:
    """vLLM's own /metrics of the serving pod, scraped by Prometheus through the pod annotations; then every panel
    query of the chart's dashboard, with its variables set to this deployment, returns a number over the range
    since the deployment was created."""
    selected = f'{{namespace="{namespace}", pod="{pod}"}}'
    for _ in range(5):
        chain.complete(base, chain.GOOD_PROMPT, max_tokens=8)
    wait_for(
        "vLLM's request histogram of the pod in Prometheus",
        lambda: chain.query_range(sandbox, f"sum(vllm:e2e_request_latency_seconds_count{selected})", began),
        timeout=120,
        interval=2,
    )
    dashboard = json.loads(DASHBOARD.read_text())
    values = {"namespace": namespace, "deployment": chain.NAME, "__rate_interval": "1m"}
    queries = [
        (f"{panel['title']} [{target['refId']}]", re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values[m[1] or m[2]], target["expr"]))  # noqa: E501
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]  # fmt: skip

    def empty() -> list[str]:
        return [f"{title}: {expr}" for title, expr in queries if not chain.query_range(sandbox, expr, began)]

    # Rates need two scrapes after the traffic: give Prometheus a few intervals.
    deadline = time.monotonic() + 60
    while (missing := empty()) and time.monotonic() < deadline:
        time.sleep(2)
    assert not missing, "dashboard panels without data for the real pod:\n" + "\n".join(missing)
