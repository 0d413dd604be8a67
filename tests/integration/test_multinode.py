"""Multi-node serving in the sandbox: a real operator renders replicas that span nodes as LeaderWorkerSets, which the
real LWS controller (built from its Go module, webhooks on 127.0.0.1) turns into groups of pods on fake GPU nodes.

Each test brings its own two fake 8xH100 nodes (a pool labelled for it) and pins its deployment to them with
spec.resources.nodeSelector, so other tests' pods on the sandbox's default H100 nodes never make it wait.
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from llama_operator.render.lws import group_restarts
from llamaops_sandbox import shapes
from tests.integration.conftest import Sandbox, wait_for
from tests.integration.fake_crash import crash
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


def _pool(sandbox: Sandbox, count: int) -> Iterator[str]:
    """``count`` fresh fake 8xH100 nodes for one test; their pool name is the nodeSelector value."""
    name = f"mn-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(sandbox.api)
    nodes = shapes.nodes(shapes.Shape(pools=[shapes.Pool(name=name, count=count, gpu=H100)]))
    for node in nodes:
        core.create_node(node)

    def ready() -> bool:
        listed = core.list_node(label_selector=f"{POOL_LABEL}={name}").items
        return len(listed) == count and all(
            any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or []) for n in listed
        )

    wait_for(f"nodes of pool {name} Ready", ready, timeout=60)
    yield name
    for node in nodes:
        core.delete_node(node["metadata"]["name"])


@pytest.fixture
def pool(sandbox: Sandbox) -> Iterator[str]:
    """Two fresh fake 8xH100 nodes: one multi-node replica."""
    yield from _pool(sandbox, 2)


@pytest.fixture
def pool4(sandbox: Sandbox) -> Iterator[str]:
    """Four: two multi-node replicas, no node to spare (a rollout must not surge)."""
    yield from _pool(sandbox, 4)


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


def two_groups(llamas: Llamas, pool: str) -> tuple[str, str]:
    """Two Maverick replicas of two nodes each, on the four nodes of ``pool``, Running; their name and config hash."""
    body = maverick(llamas.namespace, pool)
    body["spec"]["replicas"] = 2
    body["spec"]["resources"]["nodeCount"] = 4
    body["spec"]["rollout"] = {"stabilityWindow": "10s"}
    name = body["metadata"]["name"]
    llamas.create(body)
    llamas.wait_phase(name, "Running", timeout=180)
    wait_for("2 ready groups", lambda: llamas.status(name).get("readyReplicas") == 2, timeout=120)
    return name, leader_hashes(llamas, name)[0]


def leader_hashes(llamas: Llamas, name: str) -> list[str]:
    leaders = [p for p in llamas.pods(name) if p.metadata.labels.get(WORKER_INDEX) == "0"]
    return sorted(
        p.metadata.annotations["llamaops.dev/config-hash"] for p in leaders if not p.metadata.deletion_timestamp
    )


def sample_rollout(llamas: Llamas, name: str, seen: list[tuple[Any, ...]], most: list[int], stop: Any) -> None:
    """Each distinct (phase, step, old, new, partition) until ``stop`` is set, and the most pods scheduled at once."""
    while not stop.wait(0.3):
        rollout = llamas.status(name).get("rollout") or {}
        lws = llamas.lws(name) or {}
        update = ((lws.get("spec") or {}).get("rolloutStrategy") or {}).get("rollingUpdateConfiguration") or {}
        row = (rollout.get("phase"), rollout.get("step"), rollout.get("oldReplicas"), rollout.get("newReplicas"))
        row = (*row, update.get("partition"))
        if rollout and (not seen or seen[-1] != row):
            seen.append(row)
        scheduled = [p for p in llamas.pods(name) if p.spec.node_name and not p.metadata.deletion_timestamp]
        most[0] = max(most[0], len(scheduled))


def test_groups_roll_progressively_with_the_leader_worker_sets_partition(sandbox: Sandbox, pool4: str, llamas: Llamas):
    name, old = two_groups(llamas, pool4)
    seen: list[tuple[Any, ...]] = []
    most = [0]
    stop = threading.Event()
    sampler = threading.Thread(target=sample_rollout, args=(llamas, name, seen, most, stop), daemon=True)
    sampler.start()
    try:
        llamas.patch_spec(name, {"engine": {"maxModelLen": 131072}})
        done = llamas.wait_status(
            name, "rollout Completed", lambda s: (s.get("rollout") or {}).get("phase") == "Completed", 240
        )
        wait_for(
            "both groups on the new configuration, ready",
            lambda: (
                len(set(leader_hashes(llamas, name)) - {old}) == 1
                and len(leader_hashes(llamas, name)) == 2
                and llamas.status(name).get("readyReplicas") == 2
            ),
            timeout=120,
        )
    finally:
        stop.set()
        sampler.join(timeout=10)
    rollout = done["rollout"]
    assert (rollout["verdict"], rollout["steps"], rollout["oldReplicas"], rollout["newReplicas"]) == ("Passed", 2, 0, 2)
    # Step 1 moved the highest group only (partition 1), step 2 the other (partition 0); never a spare node.
    assert ("Canary", 1, 1, 1, 1) in seen, seen
    assert any(row[:4] == ("Promoting", 2, 0, 2) and row[4] == 0 for row in seen), seen
    assert most[0] <= 4, "a step held more nodes than the deployment"
    assert llamas.deployment(f"{name}-canary") is None
    lws = llamas.lws(name)
    assert lws is not None
    assert lws["spec"]["rolloutStrategy"]["rollingUpdateConfiguration"]["partition"] == 0
    assert "llamaops.dev/previous-template" not in lws["metadata"]["annotations"]
    reasons = {e.reason for e in llamas.events(name)}
    assert {"RolloutStarted", "RolloutPromoted", "RolloutCompleted"} <= reasons, reasons


def test_a_crashing_group_halts_the_rollout_and_returns_to_the_previous_template(
    sandbox: Sandbox, pool4: str, llamas: Llamas
):
    name, old = two_groups(llamas, pool4)
    previous = (llamas.lws(name) or {})["spec"]["leaderWorkerTemplate"]
    # The change brings a crash (KWOK's crash stage, 2 s after start): LWS recreates the group on each.
    llamas.patch_spec(name, {"podMetadata": {"annotations": crash("embedding_oov")}})
    halted = llamas.wait_status(
        name, "rollout Halted", lambda s: (s.get("rollout") or {}).get("phase") == "Halted", 120
    )
    assert (halted["rollout"]["reason"], halted["rollout"]["step"]) == ("CrashLoop", 1), halted["rollout"]
    condition = next(c for c in halted["conditions"] if c["type"] == "RolloutHalted")
    assert condition["status"] == "True"
    wait_for(
        "both groups back on the previous configuration",
        lambda: leader_hashes(llamas, name) == [old, old] and llamas.status(name).get("readyReplicas") == 2,
        timeout=120,
    )
    lws = llamas.lws(name)
    assert lws is not None
    template = lws["spec"]["leaderWorkerTemplate"]
    assert (
        template["leaderTemplate"]["metadata"]["annotations"] == previous["leaderTemplate"]["metadata"]["annotations"]
    )
    assert "llamaops.dev/fake-crash" not in template["leaderTemplate"]["metadata"]["annotations"]
