"""Why the pods do not serve (health.causes), from pod status as the scheduler and the kubelet write it: the
scheduler's and the kubelet's messages carried into the PodsReady condition, worst cause first, nothing secret."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from llama_operator.health import causes
from llama_operator.render.labels import CONFIG_HASH_ANNOTATION
from llama_operator.render.status import Transition
from tests.unit.pod_statuses import T0, at, backing_off, running, terminated

# As kube-scheduler 1.35 writes them (test_gpu_scheduling shows the sandbox's).
INSUFFICIENT = (
    "0/3 nodes are available: 1 Insufficient nvidia.com/gpu, 2 node(s) didn't match Pod's node affinity/selector. "
    "preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, 2 Preemption is not "
    "helpful for scheduling."
)
NO_PRODUCT = (
    "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are "
    "available: 3 Preemption is not helpful for scheduling."
)
IMAGE = "ghcr.io/llamaops/vllm:0.8.3-typo"
# As the kubelet 1.35 writes them with containerd (pkg/kubelet/images/image_manager.go).
NOT_FOUND = (
    f'rpc error: code = NotFound desc = failed to pull and unpack image "{IMAGE}": failed to resolve reference '
    f'"{IMAGE}": {IMAGE}: not found'
)
HASH = "abc123"


def _pod(name: str, *, conditions: list[dict[str, Any]] | None = None, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "annotations": {CONFIG_HASH_ANNOTATION: HASH}},
        "status": {"phase": "Pending", "conditions": conditions or [], **status},
    }


def _unschedulable(name: str, message: str = INSUFFICIENT) -> dict[str, Any]:
    scheduled = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
    return _pod(name, conditions=[scheduled])


def _waiting(name: str, reason: str, message: str = "") -> dict[str, Any]:
    container = {
        "name": "vllm",
        "image": IMAGE,
        "ready": False,
        "restartCount": 0,
        "state": {"waiting": {"reason": reason, "message": message}},
    }
    scheduled = {"type": "PodScheduled", "status": "True"}
    return _pod(name, conditions=[scheduled], containerStatuses=[container])


def _ready(name: str) -> dict[str, Any]:
    conditions = [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}]
    return {**_pod(name, conditions=conditions, containerStatuses=[running(0)]), "status": {
        "phase": "Running", "conditions": conditions, "containerStatuses": [running(0)]}}  # fmt: skip


def _starting(name: str, since: float) -> dict[str, Any]:
    ready = {"type": "Ready", "status": "False", "lastTransitionTime": at(since)}
    return {
        "metadata": {"name": name, "annotations": {CONFIG_HASH_ANNOTATION: HASH}},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "PodScheduled", "status": "True"}, ready],
            "containerStatuses": [{**running(since, ready=False), "started": False}],
        },
    }


def _deployment(replicas: int = 1, **status: Any) -> dict[str, Any]:
    probe = {"periodSeconds": 2, "failureThreshold": 300, "httpGet": {"path": "/health", "port": "http"}}
    return {
        "kind": "Deployment",
        "spec": {
            "replicas": replicas,
            "template": {
                "metadata": {"annotations": {CONFIG_HASH_ANNOTATION: HASH}},
                "spec": {"containers": [{"name": "vllm", "startupProbe": probe}]},
            },
        },
        "status": status,
    }


def test_an_unschedulable_pod_carries_the_schedulers_message() -> None:
    seen = causes.readiness([_unschedulable("p-1")], _deployment())
    assert seen.cause is not None
    assert seen.cause.reason == "Unschedulable"
    assert seen.cause.failure
    status, reason, message = causes.condition(seen)
    assert (status, reason) == (False, "Unschedulable")
    assert message == f"0/1 pods ready; pod p-1: {INSUFFICIENT}"


def test_a_gpu_product_no_node_has_reads_as_the_scheduler_says() -> None:
    _, reason, message = causes.condition(causes.readiness([_unschedulable("p-1", NO_PRODUCT)], _deployment()))
    assert reason == "Unschedulable"
    assert "didn't match Pod's node affinity/selector" in message


def test_image_pull_failures_carry_the_kubelets_message_in_either_state() -> None:
    pulling = causes.condition(causes.readiness([_waiting("p-1", "ErrImagePull", NOT_FOUND)], _deployment()))
    assert pulling == (
        False,
        "ImagePullFailed",
        f"0/1 pods ready; container vllm of pod p-1: ErrImagePull: {NOT_FOUND}",
    )
    back_off = f'Back-off pulling image "{IMAGE}": ErrImagePull: {NOT_FOUND}'
    backing = causes.readiness([_waiting("p-1", "ImagePullBackOff", back_off)], _deployment())
    assert backing.cause is not None
    assert backing.cause.reason == "ImagePullFailed"
    assert back_off in backing.cause.message
    # The same failure seen again, whichever of the two states: no new look is needed.
    assert causes.failure_key([_waiting("p-1", "ErrImagePull", NOT_FOUND)]) == backing.cause.key
    for reason in ("InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable", "SignatureValidationFailed"):
        assert causes.pod_cause(_waiting("p-1", reason)) == causes.PodCause(
            "ImagePullFailed", f"container vllm of pod p-1: {reason}: {reason}", "p-1", IMAGE
        )


def test_a_container_that_cannot_be_created_says_why() -> None:
    cause = causes.pod_cause(_waiting("p-1", "CreateContainerConfigError", 'secret "hf-token" not found'))
    assert cause is not None
    assert cause.reason == "ContainerCreateFailed"
    assert cause.message == 'container vllm of pod p-1: CreateContainerConfigError: secret "hf-token" not found'


def test_a_crash_loop_points_at_the_crash_looping_condition() -> None:
    crashing = {
        **_ready("p-1"),
        "status": {"phase": "Running", "containerStatuses": [backing_off(2, terminated(0, 3))]},
    }
    cause = causes.pod_cause(crashing)
    assert cause is not None
    assert cause.reason == "CrashLoopBackOff"
    assert "CrashLooping condition" in cause.message


def test_a_pod_not_ready_past_its_startup_budget_is_failing_its_startup_probe() -> None:
    pods = [_starting("p-1", since=0)]
    within = causes.readiness(pods, _deployment(), now=T0 + timedelta(seconds=599))
    assert within.cause is not None
    assert within.cause.reason == "Starting"
    assert not within.cause.failure
    past = causes.readiness(pods, _deployment(), now=T0 + timedelta(seconds=601))
    assert past.cause is not None
    assert past.cause.reason == "StartupProbeFailing"
    assert "startup probe's budget of 600s" in past.cause.message
    # Without a time (a pod event's quick check) it is only starting.
    assert causes.failure_key(pods) is None
    # Once started (its startup probe passed), not ready is the readiness probe's doing, however long.
    pods[0]["status"]["containerStatuses"][0]["started"] = True
    started = causes.readiness(pods, _deployment(), now=T0 + timedelta(seconds=7200))
    assert started.cause is not None
    assert (started.cause.reason, started.cause.failure) == ("NotReady", False)


def test_startup_budget_is_the_kubelets_arithmetic() -> None:
    assert causes.startup_budgets(_deployment()) == {"vllm": 600}
    bare = {"spec": {"template": {"spec": {"containers": [{"name": "vllm", "startupProbe": {"exec": {}}}]}}}}
    assert causes.startup_budgets(bare) == {"vllm": 30}  # the kubelet's defaults: 3 x 10 s
    lws = {
        "kind": "LeaderWorkerSet",
        "spec": {
            "replicas": 2,
            "leaderWorkerTemplate": {
                "size": 2,
                "leaderTemplate": {"spec": {"containers": [{"name": "vllm", "startupProbe": {"periodSeconds": 5}}]}},
                "workerTemplate": {"spec": {"containers": [{"name": "worker"}]}},
            },
        },
    }
    assert causes.startup_budgets(lws) == {"vllm": 15}
    assert causes.wanted_pods(lws) == 4


def test_the_worst_cause_wins_and_the_others_are_counted() -> None:
    pods = [
        _ready("p-0"),
        _unschedulable("p-2"),
        _waiting("p-1", "ErrImagePull", NOT_FOUND),
        _unschedulable("p-3"),
        _starting("p-4", since=0),
    ]
    seen = causes.readiness(pods, _deployment(replicas=5), now=T0)
    assert seen.cause is not None
    assert seen.cause.reason == "ImagePullFailed"
    assert (seen.ready, seen.wanted, seen.others) == (1, 5, 0)
    without_pull = causes.readiness([p for p in pods if p["metadata"]["name"] != "p-1"], _deployment(replicas=5))
    assert without_pull.cause is not None
    assert without_pull.cause.pod == "p-2"  # the first by name, so the message does not flap between pods
    _, _, message = causes.condition(without_pull)
    assert message.endswith("(and 1 more pod(s) Unschedulable)")


def test_only_the_running_configurations_pods_count() -> None:
    old = _unschedulable("old")
    old["metadata"]["annotations"] = {CONFIG_HASH_ANNOTATION: "older"}
    going = _unschedulable("going")
    going["metadata"]["deletionTimestamp"] = at(0)
    seen = causes.readiness([old, going, _ready("new")], _deployment())
    assert seen.all_ready
    assert causes.condition(seen) == (True, "PodsReady", "1/1 pods ready")


def test_missing_pods_and_a_replica_set_that_cannot_create_them() -> None:
    waiting = causes.readiness([], _deployment(replicas=2))
    assert causes.condition(waiting) == (
        False,
        "Starting",
        "0/2 pods ready; 0/2 pods exist, waiting for the rest to be created",
    )
    quota = {
        "type": "ReplicaFailure",
        "status": "True",
        "reason": "FailedCreate",
        "message": 'pods "scout-abc" is forbidden: exceeded quota: gpus, requested: requests.nvidia.com/gpu=8',
    }
    failed = causes.readiness([], _deployment(replicas=2, conditions=[quota]))
    assert failed.cause is not None
    assert failed.cause.reason == "FailedCreate"
    assert "exceeded quota" in failed.cause.message
    assert causes.condition(causes.readiness([], _deployment(replicas=0))) == (
        True, "PodsReady", "no pods wanted (0 replicas)",
    )  # fmt: skip
    assert causes.condition(causes.readiness([], None)) == (False, "NotDeployed", "no serving workload")


def test_scheduled_pods_without_containers_yet_are_starting() -> None:
    assert causes.pod_cause(_pod("p-1")) == causes.PodCause("Starting", "pod p-1: waiting to be scheduled", "p-1")
    scheduled = _pod("p-1", conditions=[{"type": "PodScheduled", "status": "True"}])
    cause = causes.pod_cause(scheduled)
    assert cause is not None
    assert cause.reason == "Starting"
    gated = _pod("p-1", conditions=[{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}])
    assert causes.pod_cause(gated) == causes.PodCause(
        "SchedulingGated", "pod p-1: SchedulingGated", "p-1", "SchedulingGated"
    )


def test_messages_are_trimmed_to_one_line_and_mask_credentials() -> None:
    long = "0/500 nodes are available:\n" + ", ".join(f"{i} node(s) had taint {{t{i}: }}" for i in range(200))
    cleaned = causes.clean(long)
    assert len(cleaned) <= causes.MESSAGE_MAX
    assert "\n" not in cleaned
    assert cleaned.endswith("...")
    leaky = (
        "failed to pull https://robot:s3cr3tPass@registry.example/v2/x: Authorization: Bearer eyJhbGciOi.abc.def "
        "GET https://bucket.s3/x?X-Amz-Credential=AKIA123&X-Amz-Signature=deadbeef&x=1 token=hf_abcdefghijklmnopqrstuv"
    )
    masked = causes.clean(leaky)
    for secret in ("s3cr3tPass", "eyJhbGciOi", "AKIA123", "deadbeef", "hf_abcdefghijklmnopqrstuv"):
        assert secret not in masked
    assert "https://***@registry.example/v2/x" in masked
    assert "x=1" in masked
    assert causes.clean(INSUFFICIENT) == INSUFFICIENT


def test_which_moves_of_the_pods_state_are_worth_a_look() -> None:
    unschedulable = causes.state_key([_unschedulable("p-1")])
    pulling = causes.state_key([_waiting("p-1", "ErrImagePull", NOT_FOUND)])
    assert causes.state_key([_ready("p-1")]) == causes.ALL_READY
    assert causes.state_key([_ready("p-1"), _starting("p-2", 0)]) is None
    assert causes.state_key([]) is None
    ready = causes.ALL_READY
    worth = [(None, unschedulable), (unschedulable, pulling), (pulling, None), (None, ready), (pulling, ready)]
    worth.append((ready, pulling))
    assert [causes.worth_a_look(*move) for move in worth] == [True] * len(worth)
    not_worth = [(pulling, pulling), (ready, None), (None, None)]
    assert [causes.worth_a_look(*move) for move in not_worth] == [False] * len(not_worth)


def test_a_reason_change_of_pods_ready_is_a_transition_to_or_from_a_failure() -> None:
    def status(value: str, reason: str) -> dict[str, Any]:
        return {"conditions": [{"type": "PodsReady", "status": value, "reason": reason, "message": reason.lower()}]}

    moved = causes.reason_transitions(status("False", "Unschedulable"), status("False", "ImagePullFailed"))
    assert moved == [Transition("PodsReady", "False", "ImagePullFailed", "imagepullfailed")]
    assert causes.warning(moved[0])
    (scheduled,) = causes.reason_transitions(status("False", "Unschedulable"), status("False", "Starting"))
    assert not causes.warning(scheduled)
    assert causes.reason_transitions(status("False", "NotDeployed"), status("False", "Starting")) == []
    assert causes.reason_transitions(status("False", "Starting"), status("True", "PodsReady")) == []  # a status change
    assert causes.reason_transitions({}, status("False", "Unschedulable")) == []
    assert causes.warning(Transition("Available", "False", "ReplicasUnavailable", ""))


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
        max_leaves=25,
    )
)
def test_garbage_never_breaks_it(garbage: Any) -> None:
    pods = [garbage, {"metadata": garbage, "status": garbage}, {"status": {"conditions": garbage}}]
    seen = causes.readiness([p for p in pods if isinstance(p, dict)], _deployment(), now=T0)
    causes.condition(seen)
    probe = {"name": "vllm", "startupProbe": {"periodSeconds": garbage, "failureThreshold": garbage, "x": 1}}
    template = {"spec": {"containers": [probe, garbage]}}
    for workload in (
        {"kind": "Deployment", "spec": garbage},
        {"kind": "LeaderWorkerSet", "spec": garbage},
        {"kind": "Deployment", "spec": {"replicas": garbage, "template": template}},
        {"kind": "LeaderWorkerSet", "spec": {"leaderWorkerTemplate": {"size": garbage, "leaderTemplate": template}}},
    ):
        causes.startup_budgets(workload)
        causes.wanted_pods(workload)
    causes.failure_key([p for p in pods if isinstance(p, dict)])
