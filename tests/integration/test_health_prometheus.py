"""The Prometheus client against the sandbox's real Prometheus, and crash-loop detection from the series
kube-state-metrics exports for a KWOK crash-looping pod -- and from that pod's status when Prometheus is gone."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client

from llama_operator.api import LlamaDeploymentSpec, LlamaDeploymentStatus
from llama_operator.health import (
    Termination,
    classify,
    combine,
    crash_context,
    decide,
    detect_from_metrics,
    detect_from_pods,
)
from llama_operator.health.prometheus import PrometheusClient, PrometheusConfig
from llama_operator.health.promql import PrometheusQueryError, PrometheusUnavailable
from llamaops_sandbox import crashloop
from tests.integration.conftest import Sandbox, gpu_deployment, wait_for

pytestmark = pytest.mark.integration

CASE = "block_table_gather"


def deployment(name: str, crash: str | None) -> dict[str, Any]:
    annotations = {"llamaops.dev/fake-crash": crash} if crash else {}
    return gpu_deployment(name, 1, "NVIDIA-H100-80GB-HBM3", image="vllm/vllm-openai:v0.8.3", annotations=annotations)


def scout_spec() -> LlamaDeploymentSpec:
    return LlamaDeploymentSpec.model_validate(
        {
            "model": {"name": "meta-llama/Llama-4-Scout-17B-16E-Instruct"},
            "engine": {"vllmVersion": "0.8.3", "patched": False, "maxModelLen": 12000, "tensorParallelSize": 8},
            "resources": {"gpuProduct": "NVIDIA-H100-80GB-HBM3"},
        }
    )


@pytest.fixture
def prometheus(sandbox: Sandbox) -> PrometheusClient:
    return PrometheusClient(PrometheusConfig(sandbox.prometheus_url, timeout_s=5))


def test_instant_and_range_queries(prometheus: PrometheusClient):
    assert prometheus.ready()
    up = prometheus.query('up{job="kube-state-metrics"}')
    assert up.result_type == "vector"
    assert [(s.labels["job"], s.value) for s in up.samples] == [("kube-state-metrics", 1.0)]
    assert abs(up.samples[0].timestamp - time.time()) < 60
    now = datetime.now(UTC)
    history = prometheus.query_range('up{job="kube-state-metrics"}', now - timedelta(seconds=20), now, step_s=2)
    assert history.result_type == "matrix"
    (series,) = history.series
    assert len(series.points) >= 5
    assert all(value == 1.0 for _, value in series.points)
    scalar = prometheus.query("scalar(vector(42))")
    assert (scalar.result_type, scalar.samples[0].value) == ("scalar", 42.0)


def test_bad_query_is_refused_by_prometheus(prometheus: PrometheusClient):
    with pytest.raises(PrometheusQueryError) as caught:
        prometheus.query("kube_pod_container_status_restarts_total{")
    assert caught.value.status == 400
    assert caught.value.error_type == "bad_data"


def test_crash_loop_from_kube_state_metrics_and_from_pod_status(
    sandbox: Sandbox, namespace: str, prometheus: PrometheusClient
):
    apps, core = client.AppsV1Api(sandbox.api), client.CoreV1Api(sandbox.api)
    apps.create_namespaced_deployment(namespace, deployment("crasher", CASE))
    apps.create_namespaced_deployment(namespace, deployment("steady", None))

    def pods(app: str) -> list[dict[str, Any]]:
        found = core.list_namespaced_pod(namespace, label_selector=f"app={app}").items
        return [sandbox.api.sanitize_for_serialization(p) for p in found]

    crashing = wait_for(
        "a crash in pod status", lambda: [p for p in pods("crasher") if detect_from_pods([p]).crash_looping]
    )
    steady = wait_for(
        "the steady pod running", lambda: [p for p in pods("steady") if detect_from_pods([p]).healthy_since]
    )
    crasher_name = crashing[0]["metadata"]["name"]
    steady_name = steady[0]["metadata"]["name"]

    seen = wait_for(
        "the crash loop in kube-state-metrics",
        lambda: (
            (o := detect_from_metrics(prometheus.crash_loop_metrics(namespace, [crasher_name]))).crash_looping and o
        ),
        timeout=60,
        interval=1,
    )
    assert seen.source == "Prometheus"
    assert (seen.pod, seen.container) == (crasher_name, "vllm")
    assert seen.restarts >= 1
    assert seen.termination is not None
    assert (seen.termination.exit_code, seen.termination.reason) == (1, "Error")
    assert seen.last_crash is not None
    assert abs((datetime.now(UTC) - seen.last_crash).total_seconds()) < 120

    quiet = detect_from_metrics(prometheus.crash_loop_metrics(namespace, [steady_name]))
    assert not quiet.crash_looping
    assert quiet.pods == 1  # its series exist: the pod was seen, and it does not crash

    # The same loop from pod status, with the real capture as termination message.
    from_pods = detect_from_pods(pods("crasher"))
    assert from_pods.crash_looping
    assert from_pods.termination is not None
    capture = crashloop.parse_captures(sandbox.layout.cuda_fixtures.joinpath("h100-torch2.11-cu130.txt").read_text())
    assert from_pods.termination.message == capture[CASE].message
    assert combine(from_pods, seen) is from_pods

    spec = scout_spec()
    crash = classify(from_pods.termination, crash_context(spec))
    assert (crash.signature, crash.known_issue) == (
        "cuda_device_assert_index_oob",
        "chunked_local_attention_block_table_overrun",
    )
    decision = decide(
        spec=spec,
        generation=1,
        status=LlamaDeploymentStatus(),
        observation=from_pods,
        classification=crash,
        now=datetime.now(UTC),
    )
    assert decision.action == "SwitchToPatchedImage"
    assert decision.state.crash_loop is not None
    assert decision.state.crash_loop.source == "PodStatus"


def test_without_prometheus_detection_uses_pod_status(sandbox: Sandbox, namespace: str):
    apps, core = client.AppsV1Api(sandbox.api), client.CoreV1Api(sandbox.api)
    apps.create_namespaced_deployment(namespace, deployment("crasher", "embedding_oov"))
    # A Prometheus that is not there: a loopback port nothing listens on.
    gone = PrometheusClient(PrometheusConfig("http://127.0.0.1:9", timeout_s=2))
    with pytest.raises(PrometheusUnavailable):
        gone.crash_loop_metrics(namespace, ["crasher"])

    def seen() -> Any:
        found = core.list_namespaced_pod(namespace, label_selector="app=crasher").items
        observation = combine(detect_from_pods([sandbox.api.sanitize_for_serialization(p) for p in found]), None)
        return observation.crash_looping and observation

    observation = wait_for("the crash loop in pod status", seen)
    assert observation.source == "PodStatus"
    assert observation.termination is not None
    crash = classify(observation.termination)
    assert crash.signature == "cuda_device_assert_embedding_oov"
    assert isinstance(observation.termination, Termination)
