"""Multi-node serving in the sandbox: a real operator renders replicas that span nodes as LeaderWorkerSets, which the
real LWS controller (built from its Go module, webhooks on 127.0.0.1) turns into groups of pods on fake GPU nodes.

Each test brings its own two fake 8xH100 nodes (a pool labelled for it) and pins its deployment to them with
spec.resources.nodeSelector, so other tests' pods on the sandbox's default H100 nodes never make it wait.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from llama_operator.render.lws import group_restarts
from llamaops_sandbox import shapes
from tests.integration.conftest import Sandbox, wait_for
from tests.integration.llamas import Llamas, example, watched_namespace
from tests.integration.operator_process import OperatorProcess

pytestmark = pytest.mark.integration

PATTERN = "mn-*"
H100 = shapes.GPU(product="NVIDIA-H100-80GB-HBM3", count=8, memoryMiB=81559, family="hopper")
POOL_LABEL = "llamaops.dev/sandbox-pool"
WORKER_INDEX = "leaderworkerset.sigs.k8s.io/worker-index"


@pytest.fixture(scope="module")
def operator(sandbox: Sandbox, llama_crd: str) -> Iterator[OperatorProcess]:
    with OperatorProcess(sandbox, PATTERN, "multinode") as process:
        yield process


@pytest.fixture
def llamas(sandbox: Sandbox, operator: OperatorProcess, request: pytest.FixtureRequest) -> Iterator[Llamas]:
    # The pool's nodes (fixture `pool`, set up first) go after the pods on them.
    with watched_namespace(sandbox, "mn", request, phase_timeout=120) as llamas:
        yield llamas


@pytest.fixture
def pool(sandbox: Sandbox) -> Iterator[str]:
    """Two fresh fake 8xH100 nodes for one test; their pool name is the nodeSelector value."""
    name = f"mn-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(sandbox.api)
    nodes = shapes.nodes(shapes.Shape(pools=[shapes.Pool(name=name, count=2, gpu=H100)]))
    for node in nodes:
        core.create_node(node)

    def ready() -> bool:
        listed = core.list_node(label_selector=f"{POOL_LABEL}={name}").items
        return len(listed) == 2 and all(
            any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or []) for n in listed
        )

    wait_for(f"nodes of pool {name} Ready", ready, timeout=60)
    yield name
    for node in nodes:
        core.delete_node(node["metadata"]["name"])


def maverick(namespace: str, pool: str) -> dict[str, Any]:
    body = example("llama4-maverick-bf16-h100-multinode.yaml", namespace)
    body["spec"]["resources"]["nodeSelector"] = {POOL_LABEL: pool}
    return body


def conditions(status: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status["conditions"]}


def test_maverick_bf16_tp8_pp2_becomes_available_through_a_leader_worker_set(
    sandbox: Sandbox, pool: str, llamas: Llamas
):
    ns = llamas.namespace
    body = maverick(ns, pool)
    name = body["metadata"]["name"]
    llamas.create(body)
    status = llamas.wait_phase(name, "Running")
    assert (
        conditions(status).items()
        >= {
            "Validated": "True",
            "Progressing": "False",
            "Available": "True",
            "Degraded": "False",
        }.items()
    )
    assert status["replicas"] == status["readyReplicas"] == 1
    assert status["effective"]["nodesPerReplica"] == 2
    assert status["effective"]["gpusPerReplica"] == 16
    assert "multi_node_replica" in {f["code"] for f in status["findings"]}

    # The LWS controller ran the group: its own status says so.
    lws = llamas.lws(name)
    assert lws is not None
    assert llamas.deployment(name) is None
    assert lws["spec"]["leaderWorkerTemplate"]["size"] == 2
    assert lws["spec"]["leaderWorkerTemplate"]["restartPolicy"] == "RecreateGroupOnPodRestart"
    assert lws["status"]["readyReplicas"] == 1
    lws_conditions = {c["type"]: c["status"] for c in lws["status"]["conditions"]}
    assert lws_conditions["Available"] == "True"
    (ref,) = lws["metadata"]["ownerReferences"]
    assert (ref["kind"], ref["uid"]) == ("LlamaDeployment", llamas.get(name)["metadata"]["uid"])

    # One leader and one worker, each with a whole H100 node of the test's pool, both Ready.
    pods = {p.metadata.labels[WORKER_INDEX]: p for p in llamas.pods(name)}
    assert set(pods) == {"0", "1"}
    nodes = {p.spec.node_name for p in pods.values()}
    assert len(nodes) == 2
    for node_name in nodes:
        node = llamas.core.read_node(node_name)
        assert node.metadata.labels[POOL_LABEL] == pool
        assert node.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    for pod in pods.values():
        assert pod.status.phase == "Running"
        (container,) = pod.spec.containers
        assert container.resources.limits == {"nvidia.com/gpu": "8"}
    leader, worker = pods["0"], pods["1"]
    assert leader.spec.containers[0].args == status["effective"]["args"]
    # LWS's pod webhook (served on 127.0.0.1) told the worker where its leader is: a per-group headless Service.
    env = {e.name: e.value for e in worker.spec.containers[0].env if e.value is not None}
    assert env["LWS_LEADER_ADDRESS"] == f"{leader.metadata.name}.{leader.metadata.name}.{ns}"
    assert env["LWS_GROUP_SIZE"] == "2"
    headless = llamas.core.read_namespaced_service(leader.metadata.name, ns)
    assert headless.spec.cluster_ip == "None"

    # The LlamaDeployment's Service reaches the leader only.
    service = llamas.core.read_namespaced_service(name, ns)
    assert service.spec.selector[WORKER_INDEX] == "0"
    endpoints = wait_for(
        "the Service's endpoints",
        lambda: [
            address.target_ref.name
            for subset in (llamas.core.read_namespaced_endpoints(name, ns).subsets or [])
            for address in subset.addresses or []
        ],
    )
    assert endpoints == [leader.metadata.name]


def test_a_replica_needing_three_nodes_on_two_is_refused(sandbox: Sandbox, pool: str, llamas: Llamas):
    ns = llamas.namespace
    body = maverick(ns, pool)
    body["spec"]["engine"]["pipelineParallelSize"] = 3
    name = body["metadata"]["name"]
    llamas.create(body)
    status = llamas.wait_phase(name, "Invalid")
    assert conditions(status)["Validated"] == "False"
    (refusal,) = [f for f in status["findings"] if f["code"] == "not_enough_nodes"]
    assert refusal["severity"] == "error"
    assert "need 3 nodes" in refusal["message"]
    assert "nodeCount is 2" in refusal["message"]
    assert "TP 8 x PP 2" in refusal["fix"]
    assert llamas.lws(name) is None
    assert llamas.deployment(name) is None
    assert not llamas.pods(name)


def test_growing_past_one_node_swaps_the_deployment_for_a_leader_worker_set(
    sandbox: Sandbox, pool: str, llamas: Llamas
):
    ns = llamas.namespace
    body = maverick(ns, pool)
    # Maverick FP8 fits one 8xH100 node (a Deployment); with PP 2 the same model spans the two nodes.
    body["spec"]["model"]["name"] = "meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8"
    body["spec"]["engine"]["pipelineParallelSize"] = 1
    name = body["metadata"]["name"]
    llamas.create(copy.deepcopy(body))
    llamas.wait_phase(name, "Running")
    assert llamas.deployment(name) is not None
    assert llamas.lws(name) is None

    llamas.patch_spec(name, {"engine": {"pipelineParallelSize": 2}})
    status = llamas.wait_phase(name, "Running")
    assert status["effective"]["nodesPerReplica"] == 2
    assert llamas.lws(name) is not None
    wait_for("the single-node Deployment deleted", lambda: llamas.deployment(name) is None, timeout=60)
    wait_for(
        "only the group's pods left",
        lambda: {p.metadata.labels.get(WORKER_INDEX) for p in llamas.pods(name)} == {"0", "1"},
        timeout=90,
    )


def test_a_crashing_group_restarts_as_a_whole_and_each_restart_is_one_crash(
    sandbox: Sandbox, pool: str, llamas: Llamas
):
    ns = llamas.namespace
    body = maverick(ns, pool)
    # KWOK's crash stage (e2e/kwok): the serving container dies with the captured CUDA failure after 3 s.
    body["spec"]["podMetadata"] = {"annotations": {"llamaops.dev/fake-crash": "embedding_oov"}}
    name = body["metadata"]["name"]
    llamas.create(body)

    def recreations() -> int:
        events = llamas.core.list_namespaced_event(ns, field_selector=f"involvedObject.name={name}").items
        mine = [
            sandbox.api.sanitize_for_serialization(e) for e in events if e.involved_object.kind == "LeaderWorkerSet"
        ]
        return group_restarts(mine).count

    count = wait_for("two group recreations", lambda: recreations() >= 2 and recreations(), timeout=120)
    assert count >= 2
    # Recreated, not restarted in place: the group's pods are new each time, so their restart counts (what crash
    # detection from pod status reads) stay at 0 or 1 and never reach CrashLoopBackOff.
    restarts = [s.restart_count for p in llamas.pods(name) for s in p.status.container_statuses or []]
    assert max(restarts, default=0) <= 1
    # The operator sees the loop all the same: each recreation is one crash of the replica.
    status = wait_for(
        "crash loop detected from group recreations",
        lambda: (s := llamas.get(name).get("status") or {}).get("remediation", {}).get("crashLoop") and s,
        timeout=60,
    )
    assert next(c for c in status["conditions"] if c["type"] == "CrashLooping")["status"] == "True"
