"""The whole mission chain on the real node: the chart's operator running in a pod, a real vLLM engine (CPU build)
in the container the operator rendered, a real crash, a real repair.

1. The node is real: a kubelet of the pinned Kubernetes with containerd, advertising nvidia.com/gpu.
2. `helm install` of charts/llama-operator with the operator image built from ./Dockerfile: its pod runs on the real
   node with the chart's ServiceAccount, RBAC, webhook Service and certificates and probes; `helm test` passes.
3. A LlamaDeployment of the tiny random Llama-4 on the unpatched image (`patched: false`, mapped by the operator's
   --image-rewrite onto the CPU build in the local registry) becomes Available from vLLM's own /health, and a
   completion through its Service answers.
4. A request with out-of-vocabulary token ids kills the engine for real; the kubelet records the termination
   message; the operator classifies it as out_of_vocab_token_ids and switches to the patched image; the same
   request then gets a 400 while the server keeps serving. vLLM's /metrics of that pod are in Prometheus, and every
   panel query of the chart's dashboard returns data for it.
5. `helm uninstall` leaves nothing that blocks writes.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from llama_operator.sandbox import realnode_config as rc
from tests.realnode.conftest import (
    CHART,
    GROUP,
    PLURAL,
    ROOT,
    VERSION,
    RealSandbox,
    make_namespace,
    model_volume,
    operator_image,
    wait_for,
)

pytestmark = pytest.mark.realnode

NAME = "tiny"
MODEL = "llamaops/tiny-llama4"
CLAIM = "models"
VOCAB_SIZE = 1000
OOV_PROMPT = [5, 6, 5 * VOCAB_SIZE]  # past the padded embedding too (tests/engine/tiny_llama4.py)
RELEASE = "llamaops"
DASHBOARD = CHART / "files" / "dashboards" / "llama-serving.json"
# The first pull of the multi-GiB CPU image and vLLM's start on a shared 2-core machine.
AVAILABLE_TIMEOUT_S = 900.0
# Loopback and the node's own Service addresses only: never through a proxy from the environment.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def llama_body(namespace: str, model_dir: Path) -> dict[str, Any]:
    """The tiny model's real config.json as its inline facts, served unpatched with --skip-tokenizer-init."""
    facts = json.loads((model_dir / "config.json").read_text())
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LlamaDeployment",
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": {
            "model": {"name": MODEL, "source": f"pvc://{CLAIM}/{model_dir.name}", "config": {"inline": facts}},
            "engine": {
                "vllmVersion": "0.32.0",
                "patched": False,
                "maxModelLen": 512,
                "maxNumSeqs": 8,
                # float32 and eager: tests/engine/tiny_llama4.py says why (no AMX kernel, quick start).
                "extraArgs": ["--skip-tokenizer-init", "--dtype", "float32", "--enforce-eager"],
            },
            "resources": {"gpuProduct": rc.GPU_PRODUCT},
            "remediation": {"policy": "Auto"},
        },
    }


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    for c in obj.get("status", {}).get("conditions", []):
        if c.get("type") == kind:
            return dict(c)
    return {}


def post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    try:
        with OPENER.open(request, timeout=120) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")
    except (OSError, ValueError) as error:
        return 0, {"error": repr(error)}


def query(sandbox: RealSandbox, promql: str) -> list[dict[str, Any]]:
    url = f"{sandbox.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with OPENER.open(url, timeout=10) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return list(body["data"]["result"])


@pytest.fixture(scope="module")
def serving_namespace(sandbox: RealSandbox) -> Iterator[str]:
    name = make_namespace(sandbox, "realnode")
    yield name
    sandbox.kubectl("delete", "namespace", name, "--wait=false")
    sandbox.kubectl("delete", "pv", f"{name}-{CLAIM}", "--ignore-not-found", "--wait=false")


@pytest.fixture(scope="module")
def release(sandbox: RealSandbox, serving_namespace: str) -> Iterator[str]:
    """The chart installed for real, its operator pinned to the real node; uninstalled at the end, after which
    nothing may block writes."""
    namespace = make_namespace(sandbox, "llamaops-system")
    # The CRD from crds/, as the integration tier installs it into the same sandbox: the chart's own copy would
    # clash with it (helm refuses to adopt an object another release or kubectl made).
    crd = ROOT / "crds" / "llamadeployments.llamaops.dev.yaml"
    sandbox.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
    sandbox.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/llamadeployments.llamaops.dev")
    values = {
        "crds": {"enabled": False},
        "image": {**operator_image(sandbox), "pullPolicy": "IfNotPresent"},
        "watch": {"namespaces": [serving_namespace]},
        "nodeSelector": {rc.REAL_NODE_LABEL: "true"},
        "imageRewrites": [
            {"from": rule.split("=", 1)[0], "to": rule.split("=", 1)[1]}
            for rule in rc.image_rewrites(sandbox.state.ports.registry)
        ],
    }
    values_file = Path(sandbox.layout.run) / f"realnode-values-{namespace}.json"
    values_file.write_text(json.dumps(values))
    sandbox.helm(
        "install", RELEASE, str(CHART), "--namespace", namespace, "--values", str(values_file),
        "--wait", "--timeout", "5m",
    )  # fmt: skip
    try:
        yield namespace
    finally:
        sandbox.helm("uninstall", RELEASE, "--namespace", namespace, "--wait", "--timeout", "5m")
        hooks = json.loads(sandbox.kubectl("get", "validatingwebhookconfigurations", "-o", "json"))["items"]
        left = [h["metadata"]["name"] for h in hooks if "llama" in h["metadata"]["name"]]
        sandbox.kubectl("delete", "namespace", namespace, "--wait=false")
        assert not left, f"helm uninstall left webhook configurations that refuse writes: {left}"


def test_the_node_is_real(sandbox: RealSandbox) -> None:
    node = json.loads(sandbox.kubectl("get", "node", rc.NODE_NAME, "-o", "json"))
    info = node["status"]["nodeInfo"]
    assert info["kubeletVersion"] == "v1.35.8"
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
    for pod in operator_pods:
        assert pod.spec.node_name == rc.NODE_NAME
        statuses = pod.status.container_statuses or []
        assert statuses, pod.status
        assert all(s.ready for s in statuses), statuses
        assert pod.spec.containers[0].image.startswith(sandbox.registry), pod.spec.containers[0].image
        assert statuses[0].image_id.endswith(operator_image(sandbox)["digest"]), statuses[0].image_id
        # A real process: the kubelet reports a container id from containerd and a pod IP from the bridge.
        assert statuses[0].container_id.startswith("containerd://")
        assert pod.status.pod_ip.startswith("10.88."), pod.status.pod_ip
    proc = sandbox.helm("test", RELEASE, "--namespace", release, "--timeout", "5m", "--logs", check=False)
    assert proc.returncode == 0, f"helm test failed:\n{proc.stdout}\n{proc.stderr}"


def test_the_mission_chain_on_a_real_engine(
    sandbox: RealSandbox, release: str, serving_namespace: str, tiny_model: Path
) -> None:
    custom, core = client.CustomObjectsApi(sandbox.api), client.CoreV1Api(sandbox.api)
    ns = serving_namespace
    model_volume(sandbox, ns, CLAIM)
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, llama_body(ns, tiny_model))

    def llama() -> dict[str, Any]:
        return dict(custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, NAME))

    def serving_pods() -> list[client.V1Pod]:
        return list(core.list_namespaced_pod(ns, label_selector=f"llamaops.dev/deployment={NAME}").items)

    def pod_logs() -> str:
        return "\n".join(
            sandbox.kubectl("logs", "-n", ns, p.metadata.name, "--tail=40") for p in serving_pods()
        )  # fmt: skip

    wait_for(
        "the LlamaDeployment Available on the unpatched CPU image",
        lambda: condition(llama(), "Available").get("status") == "True",
        timeout=AVAILABLE_TIMEOUT_S,
        interval=3,
    )
    (pod,) = serving_pods()
    (container,) = pod.spec.containers
    assert container.image == f"{sandbox.registry}/vllm/vllm-openai-cpu:v0.32.0", container.image
    assert pod.spec.node_name == rc.NODE_NAME
    # Exactly what the operator rendered ran: its args, and vLLM's own log of them.
    effective = llama()["status"]["effective"]
    assert container.args == effective["args"]
    assert effective["image"] == container.image
    service = core.read_namespaced_service(NAME, ns)
    base = f"http://{service.spec.cluster_ip}:8000"
    completion = {"model": MODEL, "max_tokens": 4, "temperature": 0}
    status, body = post(f"{base}/v1/completions", {**completion, "prompt": [5, 6, 7]})
    assert status == 200, body
    assert body["choices"][0]["finish_reason"] in {"length", "stop"}, body

    # The crash: an out-of-vocabulary id kills the unguarded engine, the container exits for real.
    status, body = post(f"{base}/v1/completions", {**completion, "prompt": OOV_PROMPT})
    assert status in {0, 500}, body

    def crash_classified() -> dict[str, Any] | None:
        crash = llama().get("status", {}).get("crashLoop") or {}
        return crash if crash.get("knownIssue") == "out_of_vocab_token_ids" else None

    crash = wait_for("the crash classified by the operator", crash_classified, timeout=300, interval=2)
    assert crash["source"] in {"PodStatus", "Prometheus"}
    # What the kubelet recorded from the dead container (its log tail: FallbackToLogsOnError), classified.
    assert crash["exitCode"] not in (None, 0), crash
    assert "index out of range" in crash["detail"] or "EngineDead" in crash["detail"], crash
    # Repaired: the patched image (the same CPU build with the plugin), Available again.
    patched_image = f"{sandbox.registry}/llamaops/vllm-cpu:0.32.0-llamaops"

    def repaired() -> bool:
        obj = llama()
        image = obj.get("status", {}).get("effective", {}).get("image")
        return image == patched_image and condition(obj, "Available").get("status") == "True"

    wait_for("the patched image Available", repaired, timeout=AVAILABLE_TIMEOUT_S, interval=3)
    # The unpatched pod is gone (the Deployment replaced it); one pod serves.
    (pod,) = wait_for("one serving pod", lambda: serving_pods() if len(serving_pods()) == 1 else None, timeout=300)
    assert pod.spec.containers[0].image == patched_image
    remediations = llama()["status"]["remediations"]
    assert remediations, llama()["status"]
    assert remediations[-1]["knownIssue"] == "out_of_vocab_token_ids", remediations
    restarts = pod.status.container_statuses[0].restart_count
    status, body = post(f"{base}/v1/completions", {**completion, "prompt": OOV_PROMPT})
    assert status == 400, body
    assert str(5 * VOCAB_SIZE) in json.dumps(body), body
    status, body = post(f"{base}/v1/completions", {**completion, "prompt": [5, 6, 7]})
    assert status == 200, body
    pod = core.read_namespaced_pod(pod.metadata.name, ns)
    assert pod.status.container_statuses[0].restart_count == restarts, "the guarded engine restarted"
    assert "index out of range" not in pod_logs()

    _metrics_and_dashboard(sandbox, ns, pod.metadata.name, base)


def _metrics_and_dashboard(sandbox: RealSandbox, namespace: str, pod: str, base: str) -> None:
    """vLLM's own /metrics of the serving pod, scraped by Prometheus through the pod annotations; then every panel
    query of the chart's dashboard, with its variables set to this deployment, returns at least one number."""
    selected = f'{{namespace="{namespace}", pod="{pod}"}}'
    for _ in range(5):
        post(f"{base}/v1/completions", {"model": MODEL, "max_tokens": 8, "temperature": 0, "prompt": [5, 6, 7]})
    wait_for(
        "vLLM's request histogram of the pod in Prometheus",
        lambda: query(sandbox, f"sum(vllm:e2e_request_latency_seconds_count{selected})"),
        timeout=120,
        interval=2,
    )
    dashboard = json.loads(DASHBOARD.read_text())
    values = {"namespace": namespace, "deployment": NAME, "__rate_interval": "1m"}
    empty = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values[m[1] or m[2]], target["expr"])
            if not query(sandbox, expr):
                empty.append(f"{panel['title']} [{target['refId']}]: {expr}")
    assert not empty, "dashboard panels without data for the real pod:\n" + "\n".join(empty)
