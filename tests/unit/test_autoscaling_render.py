"""Autoscaling's ScaledObject (render.autoscaling), its PromQL (health.signals) and the look's step that renders,
caps and pauses it (desired.autoscaling)."""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from llama_operator.api.autoscaling import AutoscalingSpec
from llama_operator.desired import Inputs, desired_state
from llama_operator.desired.autoscaling import Cluster, autoscale, pause_of
from llama_operator.handlers import capacity, nodes
from llama_operator.health.signals import kv_cache_metric, pod_regex, signal
from llama_operator.knowledge import load_knowledge
from llama_operator.knowledge.observed import NodeGpus, ObservedNodes, node_gpus
from llama_operator.planning.autoscaling import limits
from llama_operator.render.autoscaling import PAUSED_ANNOTATION, scaled_object
from llama_operator.render.labels import Owner

H200 = "NVIDIA-H200"
NOW = datetime(2026, 9, 1, 12, 0, tzinfo=UTC)
PROMETHEUS = "http://prometheus.monitoring.svc:9090"
KEDA = Cluster(keda=True, prometheus=PROMETHEUS)


def h200(name: str) -> NodeGpus:
    labels = {"nvidia.com/gpu.product": H200, "nvidia.com/gpu.memory": "143771", "nvidia.com/gpu.count": "8"}
    found = node_gpus(name, labels, {"nvidia.com/gpu": "8"})
    assert found is not None
    return found


def inputs(*names: str) -> Inputs:
    return Inputs(load_knowledge().with_nodes(ObservedNodes.of([h200(n) for n in names])))


def llama(autoscaling: dict[str, Any] | None = None, status: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": {"name": "meta-llama/Llama-3.1-8B-Instruct"},
        "engine": {"vllmVersion": "0.32.0", "maxModelLen": 8192, "tensorParallelSize": 4},
        "resources": {"gpuProduct": H200},
        "replicas": 1,
    }
    if autoscaling is not None:
        spec["autoscaling"] = autoscaling
    return {
        "apiVersion": "llamaops.dev/v1alpha1",
        "kind": "LlamaDeployment",
        "metadata": {"name": "chat", "namespace": "ai", "uid": "u-1", "generation": 2},
        "spec": spec,
        "status": status or {},
    }


def look(body: dict[str, Any], cluster: Cluster = KEDA, *, apply: bool = True, nodes_: Inputs | None = None) -> Any:
    state = desired_state(body, nodes_ or inputs("h200-0"), workload=None, now=NOW, apply=apply)
    assert state is not None
    return autoscale(state, cluster)


def condition(status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == "Autoscaling")


def scaled(state: Any) -> dict[str, Any] | None:
    return next((m for m in state.manifests if m["kind"] == "ScaledObject"), None)


# The PromQL.


@pytest.mark.parametrize(
    ("pod", "ours"),
    [
        ("chat-5d8f7c9b4-x2b7q", True),  # its Deployment's pod
        ("chat-canary-6c9d8b7f5-k4m2z", True),  # a progressive rollout's canary
        ("chat-0", True),  # a LeaderWorkerSet's leader
        ("chat-other-5d8f7c9b4-x2b7q", False),  # the Deployment of LlamaDeployment chat-other
        ("chatbot-5d8f7c9b4-x2b7q", False),
        ("chat-5d8f7c9b4", False),
    ],
)
def test_the_pods_of_a_deployment_are_selected_by_name(pod: str, ours: bool) -> None:
    # Prometheus anchors the regex; these RE2 constructs mean the same in Python's re.
    assert bool(re.fullmatch(pod_regex("chat"), pod)) == ours


def test_names_with_regex_characters_are_escaped() -> None:
    assert re.fullmatch(pod_regex("a.b"), "a.b-5d8f7c9b4-x2b7q")
    assert not re.fullmatch(pod_regex("a.b"), "axb-5d8f7c9b4-x2b7q")


def test_each_metric_has_its_query_and_metric_type() -> None:
    selector = 'namespace="ai",pod=~"chat-(canary-)?[a-z0-9]+-[a-z0-9]+|chat-[0-9]+"'
    waiting = signal(AutoscalingSpec(max_replicas=4), "ai", "chat", "0.32.0")
    assert waiting.query == f"sum(vllm:num_requests_waiting{{{selector}}})"
    assert waiting.metric_type == "AverageValue"
    kv = signal(AutoscalingSpec(max_replicas=4, metric="KVCacheUsage"), "ai", "chat", "0.32.0")
    assert kv.query == f"sum(avg by (pod) (vllm:kv_cache_usage_perc{{{selector}}}))"
    assert kv.metric_type == "AverageValue"
    ttft = signal(AutoscalingSpec(max_replicas=4, metric="TimeToFirstToken", window="5m"), "ai", "chat", "0.32.0")
    rate = f"rate(vllm:time_to_first_token_seconds_bucket{{{selector}}}[5m])"
    assert ttft.query == f"histogram_quantile(0.9, sum by (le) ({rate}))"
    assert ttft.metric_type == "Value"  # a latency does not add up over replicas


@pytest.mark.parametrize(
    ("version", "metric"),
    [
        ("0.8.3", "vllm:gpu_cache_usage_perc"),
        ("0.8.5.post1", "vllm:gpu_cache_usage_perc"),
        ("0.9.0", "vllm:kv_cache_usage_perc"),
        ("0.32.0", "vllm:kv_cache_usage_perc"),
        ("0.33.0rc1+llamaops", "vllm:kv_cache_usage_perc"),
    ],
)
def test_the_kv_cache_gauge_is_named_as_the_release_names_it(version: str, metric: str) -> None:
    assert kv_cache_metric(version) == metric


# The ScaledObject.


def test_the_scaled_object_targets_the_llamadeployment_through_its_scale_subresource() -> None:
    spec = AutoscalingSpec.model_validate(
        {"minReplicas": 2, "maxReplicas": 8, "scaleUpStabilization": "1m", "scaleDownCooldown": "10m", "target": 3}
    )
    owner = Owner("chat", "ai", "u-1", 2)
    bounds = limits(spec, None)
    rendered = scaled_object(
        owner, spec, bounds, query="sum(x)", metric_type="AverageValue", server=PROMETHEUS, paused=None
    )
    assert rendered["apiVersion"] == "keda.sh/v1alpha1"
    assert rendered["kind"] == "ScaledObject"
    assert rendered["metadata"]["name"] == "chat"
    assert rendered["metadata"]["ownerReferences"] == [owner.reference()]
    assert PAUSED_ANNOTATION not in rendered["metadata"]["annotations"]
    body = rendered["spec"]
    assert body["scaleTargetRef"] == {"apiVersion": "llamaops.dev/v1alpha1", "kind": "LlamaDeployment", "name": "chat"}
    assert (body["minReplicaCount"], body["maxReplicaCount"]) == (2, 8)
    assert (body["pollingInterval"], body["cooldownPeriod"]) == (30, 600)
    behavior = body["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior == {"scaleUp": {"stabilizationWindowSeconds": 60}, "scaleDown": {"stabilizationWindowSeconds": 600}}
    (trigger,) = body["triggers"]
    assert trigger == {
        "type": "prometheus",
        "metricType": "AverageValue",
        "metadata": {"serverAddress": PROMETHEUS, "query": "sum(x)", "threshold": "3"},
    }
    paused = scaled_object(
        owner, spec, bounds, query="q", metric_type="Value", server=PROMETHEUS, paused="CrashLooping"
    )
    assert paused["metadata"]["annotations"][PAUSED_ANNOTATION] == "true"
    assert paused["metadata"]["annotations"]["llamaops.dev/autoscaling-paused-reason"] == "CrashLooping"


# The look's step.


def test_without_autoscaling_nothing_changes() -> None:
    state = desired_state(llama(), inputs("h200-0"), workload=None, now=NOW, apply=True)
    assert state is not None
    assert autoscale(state, KEDA) == state


def test_an_autoscaled_deployment_gets_its_scaled_object_capped_at_the_gpus() -> None:
    state = look(llama({"maxReplicas": 6}))
    rendered = scaled(state)
    assert rendered is not None
    assert state.manifests[-1] is rendered
    assert (rendered["spec"]["minReplicaCount"], rendered["spec"]["maxReplicaCount"]) == (1, 2)
    found = condition(state.status)
    assert (found["status"], found["reason"]) == ("True", "LimitedByGPUs")
    assert found["message"].startswith(
        "maxReplicas 6 capped at 2: the 1 matching node allocates 8 NVIDIA-H200 GPUs, 4 per replica"
    )
    block = state.status["autoscaling"]
    assert (block["active"], block["paused"], block["maxReplicas"], block["requestedMaxReplicas"]) == (
        True,
        False,
        2,
        6,
    )
    assert block["gpuLimit"] == 2
    assert block["query"].startswith("sum(vllm:num_requests_waiting{")
    assert [(e.type, e.reason) for e in state.events if e.reason == "LimitedByGPUs"] == [("Warning", "LimitedByGPUs")]


def test_with_room_for_max_it_is_active() -> None:
    state = look(llama({"maxReplicas": 4}), nodes_=inputs("h200-0", "h200-1"))
    found = condition(state.status)
    assert (found["status"], found["reason"]) == ("True", "Active")
    assert scaled(state)["spec"]["maxReplicaCount"] == 4  # type: ignore[index]


def test_without_keda_nothing_is_rendered_and_the_condition_says_what_to_install() -> None:
    state = look(llama({"maxReplicas": 4}), Cluster(keda=False, prometheus=PROMETHEUS))
    assert scaled(state) is None
    found = condition(state.status)
    assert (found["status"], found["reason"]) == ("False", "KedaNotInstalled")
    assert "Install KEDA" in found["message"]
    assert state.status["autoscaling"]["active"] is False
    assert any(e.type == "Warning" and e.reason == "KedaNotInstalled" for e in state.events)


def test_without_a_prometheus_nothing_is_rendered() -> None:
    state = look(llama({"maxReplicas": 4}), Cluster(keda=True, prometheus=None))
    assert scaled(state) is None
    assert condition(state.status)["reason"] == "NoPrometheus"
    own = look(llama({"maxReplicas": 4, "prometheusAddress": "http://prom:9090"}), Cluster(keda=True, prometheus=None))
    assert scaled(own)["spec"]["triggers"][0]["metadata"]["serverAddress"] == "http://prom:9090"  # type: ignore[index]


def crash_looping() -> dict[str, Any]:
    return {
        "conditions": [
            {"type": "CrashLooping", "status": "True", "reason": "RemediationPending", "message": "vllm exits 1"}
        ]
    }


def test_a_crash_loop_pauses_it() -> None:
    state = look(llama({"maxReplicas": 4}, crash_looping()))
    rendered = scaled(state)
    assert rendered is not None
    assert rendered["metadata"]["annotations"][PAUSED_ANNOTATION] == "true"
    found = condition(state.status)
    assert (found["status"], found["reason"]) == ("False", "CrashLooping")
    assert "vllm exits 1" in found["message"]
    assert state.status["autoscaling"]["paused"] is True


def test_a_rollout_in_progress_pauses_it_and_a_finished_one_does_not() -> None:
    for phase, paused in (("Canary", True), ("Promoting", True), ("Completed", False), ("Halted", False)):
        status = {"rollout": {"generation": 2, "phase": phase}}
        assert (pause_of(status) is not None) == paused
    state = look(llama({"maxReplicas": 4}, {"rollout": {"generation": 2, "phase": "Canary"}}))
    assert condition(state.status)["reason"] == "RolloutInProgress"
    assert [e.type for e in state.events if e.reason == "RolloutInProgress"] == ["Normal"]


def merged(old: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch (RFC 7386) of ``patch`` onto ``old``: null removes, objects merge."""
    out = dict(old)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def written(state: Any) -> dict[str, Any]:
    """The object once ``state``'s status is written as the writer writes it (what the next look reads)."""
    body = copy.deepcopy(dict(state.body))
    body["status"] = merged(body.get("status") or {}, state.status)
    return body


def test_a_look_that_applies_nothing_applies_the_scaled_object_only_when_it_moved() -> None:
    first = look(llama({"maxReplicas": 4}))
    again = look(written(first), apply=False)
    assert again.manifests == ()
    assert not again.events
    # The crash loop starts: a status look (the crash-loop check) pauses it at once.
    body = written(first)
    body["status"]["conditions"] = [*body["status"]["conditions"], *crash_looping()["conditions"]]
    paused = look(body, apply=False)
    assert [m["kind"] for m in paused.manifests] == ["ScaledObject"]
    assert paused.changed
    # More nodes: the cap moves, and the refresh the capacity follower asks for applies it.
    wider = look(written(first), apply=False, nodes_=inputs("h200-0", "h200-1"))
    assert scaled(wider)["spec"]["maxReplicaCount"] == 4  # type: ignore[index]


def test_a_limit_no_longer_known_is_removed_and_an_unknown_one_is_no_change() -> None:
    known = written(look(llama({"maxReplicas": 4})))
    assert known["status"]["autoscaling"]["gpuLimit"] == 2
    unlisted = Inputs(load_knowledge())  # the nodes not listed (yet, or no right to)
    forgotten = look(known, apply=False, nodes_=unlisted)
    assert forgotten.status["autoscaling"]["gpuLimit"] is None  # the merge patch removes it
    again = look(written(forgotten), apply=False, nodes_=unlisted)
    assert "gpuLimit" not in again.status["autoscaling"]
    assert not again.changed


def test_removing_autoscaling_deletes_the_scaled_object_and_the_status_block() -> None:
    before = written(look(llama({"maxReplicas": 4})))
    before["spec"] = {k: v for k, v in before["spec"].items() if k != "autoscaling"}
    state = look(before)
    assert state.prune_scaled_object
    assert scaled(state) is None
    assert state.status["autoscaling"] is None  # a merge patch's null removes it
    assert all(c["type"] != "Autoscaling" for c in state.status["conditions"])
    assert not look(before, Cluster(keda=False, prometheus=None)).prune_scaled_object


def test_an_invalid_generation_leaves_autoscaling_as_it_was() -> None:
    body = written(look(llama({"maxReplicas": 4})))
    body["spec"]["autoscaling"] = {"minReplicas": 5, "maxReplicas": 4}
    state = look(body)
    assert scaled(state) is None
    assert not state.prune_scaled_object
    assert "autoscaling" not in state.status  # the block the merge patch leaves stays


# The capacity follower re-judges the cap when the nodes change.


def test_the_follower_refreshes_an_object_whose_cap_moves() -> None:
    view = nodes.NodeView()
    view.replace([h200("h200-0")])
    body = written(look(llama({"maxReplicas": 4}), nodes_=Inputs(view.knowledge(load_knowledge()))))
    key = ("ai", "chat")
    try:
        capacity.track(key, body)
        follower = capacity.Follower(view)
        assert follower.round() == []
        # The Capacity verdict (one replica fits) is unchanged; only the cap moves from 2 to 4.
        view.put("h200-1", h200("h200-1"))
        assert follower.round() == [key]
    finally:
        capacity.forget(key)


def test_the_follower_refreshes_an_object_that_waits_for_keda_once_keda_is_there() -> None:
    view = nodes.NodeView()
    view.replace([h200("h200-0")])
    knowledge = Inputs(view.knowledge(load_knowledge()))
    body = written(look(llama({"maxReplicas": 2}), Cluster(keda=False, prometheus=PROMETHEUS), nodes_=knowledge))
    key = ("ai", "chat")
    keda = [False]
    try:
        capacity.track(key, body)
        assert capacity._tracked[key].awaits_keda
        follower = capacity.Follower(view, keda=lambda: keda[0])
        assert follower.round() == []
        keda[0] = True  # KEDA's CRDs installed: no event of the LlamaDeployment says so
        assert follower.round() == [key]
        capacity.track(key, written(look(body, nodes_=knowledge)))  # the refresh's status comes back
        assert not capacity._tracked[key].awaits_keda
        assert follower.round() == []
    finally:
        capacity.forget(key)
