"""Autoscaling end to end under real load: a real vLLM engine queues requests, real KEDA reads the queue from the
sandbox Prometheus, and the real HPA of the kube-controller-manager scales the LlamaDeployment through its scale
subresource, out to the GPU limit and back in.

- The engine: vLLM CPU serving the tiny random Llama-4 (tests/integration/vllm_engine.py) with --max-num-seqs 1, so
  that of C clients sending completions back to back one runs and C-1 wait: `vllm:num_requests_waiting` is vLLM's own
  gauge. The LlamaDeployment's pods are KWOK fakes, so Prometheus scrapes the engine as the deployment's first pod
  (the labels a pod scrape gives); the ScaledObject's query is the operator's, untouched.
- The limit: the sandbox's one H200 node allocates 8 GPUs, 4 replicas of TP 2. maxReplicas asks for more; the
  operator caps the ScaledObject at what the GPUs hold and says so in the Autoscaling condition. The HPA, wanting
  more, stops there (its own ScalingLimited condition says TooManyReplicas).
- The windows: scale-up stabilization 0 s, scale-down cooldown COOLDOWN_S. Once the load stops the deployment goes
  back to one replica, and not before the cooldown has passed since the last high recommendation.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.integration.conftest import Sandbox, not_found_is_none, wait_for
from tests.integration.llamas import Llamas, condition, llama, watched_namespace
from tests.integration.operator_process import OperatorProcess
from tests.integration.vllm_engine import Load, Vllm, answer, file_sd, scrape_as

pytestmark = pytest.mark.integration
__all__ = ["file_sd"]  # the fixture

NAME = "loaded"
H200 = "NVIDIA-H200"
TP = 2
TARGET = 1  # requests waiting per replica
COOLDOWN_S = 20
# The sandbox's controller-manager syncs HPAs every 5 s; a scale-down can come one sync early or late.
HPA_SYNC_S = 5
CLIENTS = 12


@pytest.fixture(scope="module")
def operator(sandbox: Sandbox, llama_crd: str) -> Iterator[OperatorProcess]:
    env = {"LLAMAOPS_PROMETHEUS_URL": sandbox.prometheus_url, "LLAMAOPS_PROMETHEUS_TIMEOUT": "2s"}
    with OperatorProcess(sandbox, "autoload-*", "autoload", env=env) as process:
        yield process


@pytest.fixture
def llamas(sandbox: Sandbox, operator: OperatorProcess, request: pytest.FixtureRequest) -> Iterator[Llamas]:
    with watched_namespace(sandbox, "autoload", request) as llamas:
        yield llamas


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vllm]:
    server = Vllm(tmp_path_factory.mktemp("vllm-autoscale"), max_num_seqs=1)
    yield server
    server.stop()


def h200_room(sandbox: Sandbox) -> int:
    nodes = client.CoreV1Api(sandbox.api).list_node(label_selector=f"nvidia.com/gpu.product={H200}").items
    usable = [n for n in nodes if not n.spec.unschedulable and not n.spec.taints]
    return sum(int(n.status.allocatable.get("nvidia.com/gpu", "0")) // TP for n in usable)


def hpa(sandbox: Sandbox, namespace: str) -> client.V2HorizontalPodAutoscaler | None:
    """The HPA KEDA made for the ScaledObject (KEDA names it keda-hpa-<ScaledObject>)."""
    api = client.AutoscalingV2Api(sandbox.api)
    found: client.V2HorizontalPodAutoscaler | None = not_found_is_none(
        api.read_namespaced_horizontal_pod_autoscaler, f"keda-hpa-{NAME}", namespace
    )
    return found


def hpa_condition(found: client.V2HorizontalPodAutoscaler, type_: str) -> Any:
    return next((c for c in (found.status.conditions or []) if c.type == type_), None)


def test_real_load_scales_out_to_the_gpu_limit_and_back_in(
    sandbox: Sandbox, llamas: Llamas, engine: Vllm, file_sd: Path
) -> None:
    room = h200_room(sandbox)
    assert room >= 2, f"the sandbox's H200 nodes hold {room} replicas of TP {TP}"
    body = llama(NAME, llamas.namespace)
    body["spec"]["engine"].update(maxModelLen=8192, tensorParallelSize=TP)
    body["spec"]["resources"]["gpuProduct"] = H200
    body["spec"]["autoscaling"] = {
        "minReplicas": 1,
        "maxReplicas": room + 2,
        "metric": "RequestsWaiting",
        "target": TARGET,
        "pollingInterval": "5s",
        "scaleUpStabilization": "0s",
        "scaleDownCooldown": f"{COOLDOWN_S}s",
    }
    llamas.create(body)

    # Capped at the GPUs, and said so.
    found = wait_for(
        "Autoscaling=True/LimitedByGPUs",
        lambda: (c := llamas.condition(NAME, "Autoscaling")) and c["reason"] == "LimitedByGPUs" and c,
        timeout=90,
    )
    assert found["status"] == "True"
    assert found["message"].startswith(f"maxReplicas {room + 2} capped at {room}:"), found["message"]
    status = llamas.wait_status(NAME, "one replica ready", lambda s: s.get("readyReplicas") == 1, 120)
    assert status["autoscaling"]["maxReplicas"] == room
    query = status["autoscaling"]["query"]
    hpa_object = wait_for("KEDA's HPA", lambda: hpa(sandbox, llamas.namespace), timeout=60)
    assert hpa_object.spec.max_replicas == room

    (pod,) = [p.metadata.name for p in llamas.pods(NAME) if not p.metadata.deletion_timestamp]
    scrape_as(file_sd, f"autoscale-{llamas.namespace}", [(engine, llamas.namespace, pod)])
    wait_for("Prometheus scraping the engine as the pod", lambda: answer(sandbox, query) == 0.0, timeout=60)

    load = Load(engine, CLIENTS)
    try:
        queued = wait_for("requests queued in vLLM", lambda: (w := answer(sandbox, query)) and w >= room and w)
        wait_for(
            f"{room} replicas (the GPU limit)",
            lambda: llamas.get(NAME)["spec"]["replicas"] == room and llamas.status(NAME).get("replicas") == room,
            timeout=120,
        )
        deployment = llamas.deployment(NAME)
        assert deployment is not None
        assert deployment.spec.replicas == room
        # The HPA wants more than the GPUs hold and stays at the limit: its own condition says so, and spec.replicas
        # never passes it over three of its syncs.
        limited = wait_for(
            "the HPA limited at maxReplicas",
            lambda: (
                (h := hpa(sandbox, llamas.namespace))
                and (c := hpa_condition(h, "ScalingLimited"))
                and c.status == "True"
                and c
            ),
            timeout=60,
        )
        assert limited.reason == "TooManyReplicas", limited
        seen = set()
        for _ in range(3 * HPA_SYNC_S):
            seen.add(llamas.get(NAME)["spec"]["replicas"])
            time.sleep(1)
        assert seen == {room}, seen
        status = llamas.status(NAME)
        assert condition(status, "Autoscaling")["reason"] == "LimitedByGPUs"
        assert status["autoscaling"]["gpuLimit"] == room
        assert queued >= room
    finally:
        load.stop()
    assert not load.errors, load.errors[:3]
    assert load.answered > 0

    # Back in: once nothing waits, one replica after the cooldown, not before it.
    wait_for("the queue drained", lambda: answer(sandbox, query) == 0.0, timeout=60)
    drained = time.monotonic()
    wait_for(
        "back to 1 replica",
        lambda: llamas.get(NAME)["spec"]["replicas"] == 1 and llamas.status(NAME).get("replicas") == 1,
        timeout=COOLDOWN_S + 90,
    )
    held = time.monotonic() - drained
    assert held >= COOLDOWN_S - HPA_SYNC_S - 2, f"scaled in {held:.0f} s after the queue drained"
    deployment = llamas.deployment(NAME)
    assert deployment is not None
    assert deployment.spec.replicas == 1
    reasons = {e.reason for e in llamas.events(NAME)}
    assert "LimitedByGPUs" in reasons or any("LimitedByGPUs" in (e.message or "") for e in llamas.events(NAME))
