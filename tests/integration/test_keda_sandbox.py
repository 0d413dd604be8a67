"""KEDA in the sandbox drives the real HPA controller: a Prometheus gauge goes up, the Deployment scales out; it goes
down, the Deployment scales back in.

The chain is the production one, every link real: a gauge served on loopback by this test (Python's http.server)
-> the sandbox Prometheus, scraping it through its file_sd job -> KEDA's Prometheus scaler in keda-operator ->
KEDA's metrics adapter (gRPC from the operator) -> `external.metrics.k8s.io` through the kube-apiserver's
aggregation layer -> the HPA controller of kube-controller-manager -> the Deployment's scale subresource -> KWOK's
fake pods. KEDA only makes the HPA (minReplicaCount 1: no activation from zero, so every replica count here is the
HPA's decision).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes import client
from kubernetes.utils import parse_quantity

from llamaops_sandbox import config, keda
from tests.integration.conftest import Sandbox, wait_for

pytestmark = pytest.mark.integration

GAUGE = "llamaops_keda_test_queue_depth"
THRESHOLD = 10  # per replica (the trigger's AverageValue target)
MAX_REPLICAS = 4
SCALE_TIMEOUT_S = 120.0


class Gauge:
    """One Prometheus gauge on 127.0.0.1, in the text exposition format; ``value`` is what the next scrape reads."""

    def __init__(self) -> None:
        self.value = 0.0
        gauge = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = f"# TYPE {GAUGE} gauge\n{GAUGE} {gauge.value}\n".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gauge(sandbox: Sandbox, namespace: str) -> Iterator[Gauge]:
    """The gauge, listed in the sandbox Prometheus's file_sd directory with this test's namespace as a label."""
    served = Gauge()
    directory = config.file_sd_dir(sandbox.layout)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"keda-{namespace}.json"
    target.write_text(json.dumps([{"targets": [f"127.0.0.1:{served.port}"], "labels": {"namespace": namespace}}]))
    try:
        yield served
    finally:
        target.unlink(missing_ok=True)
        served.stop()


def deployment(name: str) -> dict[str, Any]:
    """One replica of a pod KWOK runs on a fake node (no GPU asked for: the GPU tests keep theirs)."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"nodeSelector": {"type": "kwok"}, "containers": [{"name": "app", "image": "app:1"}]},
            },
        },
    }


def scaled_object(name: str, target: str, prometheus_url: str, query: str) -> dict[str, Any]:
    # No stabilization and one-second policy periods: each HPA sync (config.HPA_SYNC_PERIOD) may move all the way.
    fast = {"stabilizationWindowSeconds": 0, "policies": [{"type": "Percent", "value": 100, "periodSeconds": 1}]}
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"name": target},
            "pollingInterval": 2,
            "cooldownPeriod": 5,
            "minReplicaCount": 1,
            "maxReplicaCount": MAX_REPLICAS,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {"scaleUp": fast, "scaleDown": fast}}},
            "triggers": [
                {
                    "type": "prometheus",
                    "metadata": {"serverAddress": prometheus_url, "query": query, "threshold": str(THRESHOLD)},
                }
            ],
        },
    }


def test_the_external_metrics_api_is_served_by_kedas_adapter_through_the_aggregator(sandbox: Sandbox):
    discovery = json.loads(sandbox.kubectl("get", "--raw", f"/apis/{keda.API_GROUP}/{keda.API_VERSION}"))
    assert discovery["groupVersion"] == f"{keda.API_GROUP}/{keda.API_VERSION}"
    assert "externalmetrics" in {r["name"] for r in discovery["resources"]}
    apiservice = json.loads(sandbox.kubectl("get", "apiservice", keda.APISERVICE, "-o", "json"))
    assert apiservice["spec"]["service"]["name"] == keda.SERVICE
    available = [c for c in apiservice["status"]["conditions"] if c["type"] == "Available"]
    assert [c["status"] for c in available] == ["True"]


def test_a_prometheus_gauge_scales_a_deployment_out_and_back_in(sandbox: Sandbox, namespace: str, gauge: Gauge):
    apps = client.AppsV1Api(sandbox.api)
    custom = client.CustomObjectsApi(sandbox.api)
    autoscaling = client.AutoscalingV2Api(sandbox.api)
    query = f'max({GAUGE}{{namespace="{namespace}"}})'
    wait_for("Prometheus to scrape the gauge", lambda: sandbox.prometheus_query(query))

    apps.create_namespaced_deployment(namespace, deployment("web"))
    custom.create_namespaced_custom_object(
        "keda.sh", "v1alpha1", namespace, "scaledobjects", scaled_object("queue", "web", sandbox.prometheus_url, query)
    )

    # KEDA's HPA, owned by the ScaledObject, with the external metric KEDA's adapter serves.
    hpa = wait_for(
        "KEDA to create the HPA",
        lambda: autoscaling.list_namespaced_horizontal_pod_autoscaler(namespace).items,
    )[0]
    (owner,) = hpa.metadata.owner_references
    assert (owner.kind, owner.name, owner.controller) == ("ScaledObject", "queue", True)
    assert (hpa.spec.scale_target_ref.kind, hpa.spec.scale_target_ref.name) == ("Deployment", "web")
    assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (1, MAX_REPLICAS)
    hpa_name = hpa.metadata.name
    (metric,) = hpa.spec.metrics
    assert metric.type == "External"

    def replicas() -> tuple[int | None, int | None]:
        status = apps.read_namespaced_deployment("web", namespace).status
        return status.replicas, status.ready_replicas

    def external_value() -> float | None:
        selector = ",".join(f"{k}={v}" for k, v in metric.external.metric.selector.match_labels.items())
        path = f"/apis/{keda.API_GROUP}/{keda.API_VERSION}/namespaces/{namespace}/{metric.external.metric.name}"
        items = json.loads(sandbox.kubectl("get", "--raw", f"{path}?labelSelector={selector}"))["items"]
        return float(parse_quantity(items[0]["value"])) if items else None

    gauge.value = 3 * THRESHOLD
    wait_for("the adapter to serve the raised gauge", lambda: external_value() == 3 * THRESHOLD, SCALE_TIMEOUT_S)
    wait_for("the HPA to scale web out to 3", lambda: replicas() == (3, 3), SCALE_TIMEOUT_S)
    status = autoscaling.read_namespaced_horizontal_pod_autoscaler(hpa_name, namespace).status
    assert status.desired_replicas == 3
    (current,) = status.current_metrics
    assert current.external.current.average_value is not None

    gauge.value = THRESHOLD / 2
    wait_for("the HPA to scale web back in to 1", lambda: replicas() == (1, 1), SCALE_TIMEOUT_S)
    events = client.CoreV1Api(sandbox.api).list_namespaced_event(namespace).items
    rescales = [e.message for e in events if e.reason == "SuccessfulRescale" and e.involved_object.name == hpa_name]
    assert any("New size: 3" in m for m in rescales), rescales
    assert any("New size: 1" in m for m in rescales), rescales
