"""The pieces of the mission chain on the real node, shared by tests/realnode and benchmarks/realnode.py: the chart's
operator installed for real, the tiny Llama-4 LlamaDeployment, and requests to its Service."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from kubernetes import client

from llamaops_sandbox import realnode_config as rc
from tests.integration.conftest import make_namespace
from tests.realnode.conftest import CHART, GROUP, PLURAL, ROOT, VERSION, RealSandbox, operator_image

NAME = "tiny"
MODEL = "llamaops/tiny-llama4"
CLAIM = "models"
RELEASE = "llamaops"
VLLM_VERSION = "0.32.0"
VOCAB_SIZE = 1000
FATAL_TOKEN_ID = 5 * VOCAB_SIZE  # past the padded embedding too (tests/engine/tiny_llama4.py)
OOV_PROMPT = [5, 6, FATAL_TOKEN_ID]
GOOD_PROMPT = [5, 6, 7]
# Loopback and the node's own Service and pod addresses only: never through a proxy from the environment.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def unpatched_image(sandbox: RealSandbox) -> str:
    return f"{sandbox.registry}/vllm/vllm-openai-cpu:v{VLLM_VERSION}"


def patched_image(sandbox: RealSandbox) -> str:
    return f"{sandbox.registry}/llamaops/vllm-cpu:{VLLM_VERSION}-llamaops"


def install_operator(sandbox: RealSandbox, watched: list[str]) -> str:
    """`helm install` of the chart with the operator image built from ./Dockerfile (pinned by digest), its pod on
    the real node, image rewrites onto the CPU builds. Returns the release's namespace."""
    namespace = make_namespace(sandbox, "llamaops-system")
    # The CRD from crds/, as the integration tier installs it into the same sandbox: the chart's own copy would
    # clash with it (helm refuses to adopt an object another release or kubectl made).
    crd = ROOT / "crds" / "llamadeployments.llamaops.dev.yaml"
    sandbox.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
    sandbox.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/llamadeployments.llamaops.dev")
    values = {
        "crds": {"enabled": False},
        "image": {**operator_image(sandbox), "pullPolicy": "IfNotPresent"},
        "watch": {"namespaces": watched},
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
    return namespace


def uninstall_operator(sandbox: RealSandbox, namespace: str) -> list[str]:
    """`helm uninstall`; returns the names of the release's webhook configurations still there (which would refuse
    LlamaDeployment writes with nothing behind them)."""
    sandbox.helm("uninstall", RELEASE, "--namespace", namespace, "--wait", "--timeout", "5m")
    hooks = json.loads(sandbox.kubectl("get", "validatingwebhookconfigurations", "-o", "json"))["items"]
    sandbox.kubectl("delete", "namespace", namespace, "--wait=false")
    return [h["metadata"]["name"] for h in hooks if h["metadata"]["name"].startswith(f"{RELEASE}-")]


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
                "vllmVersion": VLLM_VERSION,
                "patched": False,
                "maxModelLen": 512,
                "maxNumSeqs": 8,
                # float32 and eager: tests/engine/tiny_llama4.py says why (no AMX kernel; a quick start).
                "extraArgs": ["--skip-tokenizer-init", "--dtype", "float32", "--enforce-eager"],
            },
            "resources": {"gpuProduct": rc.GPU_PRODUCT},
            "remediation": {"policy": "Auto"},
        },
    }


def read_llama(sandbox: RealSandbox, namespace: str) -> dict[str, Any]:
    return dict(
        client.CustomObjectsApi(sandbox.api).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, NAME)
    )


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    for c in obj.get("status", {}).get("conditions", []):
        if c.get("type") == kind:
            return dict(c)
    return {}


def available_with(obj: dict[str, Any], image: str) -> bool:
    status = obj.get("status", {})
    return status.get("effective", {}).get("image") == image and condition(obj, "Available").get("status") == "True"


def service_url(sandbox: RealSandbox, namespace: str) -> str:
    service = client.CoreV1Api(sandbox.api).read_namespaced_service(NAME, namespace)
    return f"http://{service.spec.cluster_ip}:8000"


def complete(base: str, prompt: list[int], max_tokens: int = 4, timeout: float = 120) -> tuple[int, dict[str, Any]]:
    """POST /v1/completions; (0, error) when the connection fails."""
    body = {"model": MODEL, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
    request = urllib.request.Request(
        f"{base}/v1/completions", data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    try:
        with OPENER.open(request, timeout=timeout) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")
    except (OSError, ValueError) as error:
        return 0, {"error": repr(error)}


def health(pod_ip: str) -> int | None:
    try:
        with OPENER.open(f"http://{pod_ip}:8000/health", timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def query_range(sandbox: RealSandbox, promql: str, start: float, end: float | None = None) -> list[dict[str, Any]]:
    """A range query, as a Grafana time-series panel runs its queries."""
    params = {"query": promql, "start": f"{start:.3f}", "end": f"{end or time.time():.3f}", "step": "2"}
    url = f"{sandbox.prometheus_url}/api/v1/query_range?" + urllib.parse.urlencode(params)
    with OPENER.open(url, timeout=30) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return list(body["data"]["result"])
