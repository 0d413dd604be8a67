"""spec.autoscaling end to end with the sandbox's KEDA (e2e/llamaops_sandbox/keda.py runs it beside the control plane):
vLLM's queue goes up, the LlamaDeployment scales out; it goes down, it scales back in.

Every link is the production one but vLLM itself: a `vllm:num_requests_waiting` gauge served on loopback by this test,
listed in the sandbox Prometheus's file_sd job with the namespace and pod labels a scrape of the pod would carry ->
the operator's ScaledObject (its query, threshold and behavior) -> KEDA's Prometheus scaler and metrics adapter -> the
HPA of kube-controller-manager -> the LlamaDeployment's scale subresource (spec.replicas) -> the operator's reconcile
-> the Deployment and KWOK's fake pods -> status.replicas.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes import client

from llamaops_sandbox import config
from tests.integration.conftest import Sandbox, wait_for
from tests.integration.llamas import Llamas, watched_namespace
from tests.integration.operator_process import OperatorProcess
from tests.integration.test_autoscaling import autoscaled

pytestmark = pytest.mark.integration

WAITING = "vllm:num_requests_waiting"
TARGET = 5  # requests waiting per replica
SCALE_TIMEOUT_S = 120.0


class Gauge:
    """vLLM's queue gauge on 127.0.0.1; ``value`` is what the next scrape reads."""

    def __init__(self) -> None:
        self.value = 0.0
        gauge = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = f"# TYPE {WAITING} gauge\n{WAITING} {gauge.value}\n".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def operator(sandbox: Sandbox, llama_crd: str) -> Iterator[OperatorProcess]:
    env = {"LLAMAOPS_PROMETHEUS_URL": sandbox.prometheus_url, "LLAMAOPS_PROMETHEUS_TIMEOUT": "2s"}
    with OperatorProcess(sandbox, "kedascale-*", "kedascale", env=env) as process:
        yield process


@pytest.fixture
def llamas(sandbox: Sandbox, operator: OperatorProcess, request: pytest.FixtureRequest) -> Iterator[Llamas]:
    with watched_namespace(sandbox, "kedascale", request) as llamas:
        yield llamas


def test_vllm_queue_scales_a_llamadeployment_out_and_back_in(sandbox: Sandbox, llamas: Llamas):
    fast = {"pollingInterval": "2s", "scaleUpStabilization": "0s", "scaleDownCooldown": "0s"}
    body = autoscaled("queue", llamas.namespace, {"maxReplicas": 3, "target": TARGET, **fast})
    body["spec"]["engine"]["tensorParallelSize"] = 1
    llamas.create(body)
    status = llamas.wait_phase("queue", "Running")
    assert (status["autoscaling"]["active"], status["autoscaling"]["maxReplicas"]) == (True, 3)

    # The gauge carries the labels a scrape of the serving pod adds.
    pod = llamas.pods("queue")[0].metadata.name
    gauge = Gauge()
    target = config.file_sd_dir(sandbox.layout) / f"autoscale-{llamas.namespace}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    labels = {"namespace": llamas.namespace, "pod": pod}
    target.write_text(json.dumps([{"targets": [f"127.0.0.1:{gauge.port}"], "labels": labels}]))
    try:
        wait_for("Prometheus to scrape the gauge", lambda: sandbox.prometheus_query(status["autoscaling"]["query"]))
        autoscaling = client.AutoscalingV2Api(sandbox.api)
        hpa = wait_for(
            "KEDA to create the HPA",
            lambda: autoscaling.list_namespaced_horizontal_pod_autoscaler(llamas.namespace).items,
        )[0]
        ref = hpa.spec.scale_target_ref
        assert (ref.api_version, ref.kind, ref.name) == ("llamaops.dev/v1alpha1", "LlamaDeployment", "queue")
        assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (1, 3)

        gauge.value = 2 * TARGET + 2  # ceil(12 / 5) = 3 replicas
        wait_for(
            "the HPA to set spec.replicas 3", lambda: llamas.get("queue")["spec"]["replicas"] == 3, SCALE_TIMEOUT_S
        )
        wait_for(
            "3 replicas serving",
            lambda: (s := llamas.status("queue")).get("replicas") == 3 and s.get("readyReplicas") == 3,
            SCALE_TIMEOUT_S,
        )
        deployment = llamas.deployment("queue")
        assert deployment is not None
        assert deployment.spec.replicas == 3

        gauge.value = 0
        wait_for("the HPA to scale back to 1", lambda: llamas.get("queue")["spec"]["replicas"] == 1, SCALE_TIMEOUT_S)
        wait_for("1 replica", lambda: llamas.status("queue").get("replicas") == 1, SCALE_TIMEOUT_S)
    finally:
        target.unlink(missing_ok=True)
        gauge.stop()
    events = client.CoreV1Api(sandbox.api).list_namespaced_event(llamas.namespace).items
    rescales = [e.message for e in events if e.reason == "SuccessfulRescale"]
    assert any("New size: 3" in m for m in rescales), rescales
    assert any("New size: 1" in m for m in rescales), rescales
