"""Progressive rollout in the sandbox (issue #22): a 4-replica deployment moved to a vLLM version whose pods crash
(KWOK's crash stage, only while the image is the new one) halts after the first replica and returns it to the
previous version, the other three never restarted; the same change without a crash completes step by step. No
step ever holds more GPUs than the deployment (no surge)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import Sandbox, wait_for
from tests.integration.fake_crash import crash
from tests.integration.llamas import Llamas, example, watched_namespace
from tests.integration.operator_process import OperatorProcess

pytestmark = pytest.mark.integration

NAME = "llama31-8b"
OLD, NEW = "0.31.0", "0.32.0"
REPLICAS = 4


@pytest.fixture(scope="module")
def operator(sandbox: Sandbox, llama_crd: str) -> Iterator[OperatorProcess]:
    with OperatorProcess(sandbox, "rollout-*", "rollout") as process:
        yield process


@pytest.fixture
def llamas(sandbox: Sandbox, operator: OperatorProcess, request: pytest.FixtureRequest) -> Iterator[Llamas]:
    with watched_namespace(sandbox, "rollout", request) as llamas:
        yield llamas


class Sampler:
    """Polls the deployment's pods and status.rollout in the background: the most GPU pods scheduled at once, and
    each rollout phase seen (in order)."""

    def __init__(self, llamas: Llamas) -> None:
        self.llamas = llamas
        self.most_scheduled = 0
        self.phases: list[str] = []
        # (step, oldReplicas, newReplicas) of each status.rollout seen while the rollout moved.
        self.steps: list[tuple[int, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.3):
            pods = self.llamas.pods(NAME)
            # Scheduled and not being deleted: a Deployment's own rolling update (maxSurge 0) replaces a pod once
            # it is terminating; the canary waits until the stable pods are gone.
            scheduled = [
                p
                for p in pods
                if p.spec.node_name
                and not p.metadata.deletion_timestamp
                and p.status.phase not in ("Succeeded", "Failed")
            ]
            self.most_scheduled = max(self.most_scheduled, len(scheduled))
            rollout = self.llamas.status(NAME).get("rollout") or {}
            phase = rollout.get("phase")
            if phase and (not self.phases or self.phases[-1] != phase):
                self.phases.append(phase)
            if phase in ("Canary", "Promoting"):
                seen = (int(rollout["step"]), int(rollout["oldReplicas"]), int(rollout["newReplicas"]))
                if not self.steps or self.steps[-1] != seen:
                    self.steps.append(seen)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def running_four(llamas: Llamas, rollout: dict[str, Any] | None = None) -> dict[str, Any]:
    body = example("llama31-8b-h100.yaml", llamas.namespace)
    body["spec"]["replicas"] = REPLICAS
    body["spec"]["engine"]["vllmVersion"] = OLD
    body["spec"]["rollout"] = rollout or {"stabilityWindow": "10s"}
    llamas.create(body)
    status = llamas.wait_phase(NAME, "Running", timeout=180)
    wait_for("4 ready replicas", lambda: llamas.status(NAME).get("readyReplicas") == REPLICAS, timeout=120)
    return status


def images(llamas: Llamas) -> list[str]:
    return sorted(p.spec.containers[0].image for p in llamas.pods(NAME) if not p.metadata.deletion_timestamp)


def all_on(llamas: Llamas, version: str) -> None:
    """Wait until the four replicas run ``version`` and are ready, nothing else left."""
    wait_for(
        f"4 ready replicas of vLLM {version}",
        lambda: (
            images(llamas) == [f"ghcr.io/llamaops/vllm:{version}-llamaops"] * REPLICAS
            and llamas.status(NAME).get("readyReplicas") == REPLICAS
        ),
        timeout=120,
    )


def test_crashing_version_halts_after_the_first_replica_and_returns_it(llamas: Llamas, operator: OperatorProcess):
    running_four(llamas)
    before = {p.metadata.uid: p.spec.containers[0].image for p in llamas.pods(NAME)}
    assert len(before) == REPLICAS
    assert all(f"vllm:{OLD}" in image for image in before.values())

    with Sampler(llamas) as sampler:
        # A new vLLM release whose pods crash (only while they run the new image).
        llamas.patch_spec(
            NAME,
            {
                "engine": {"vllmVersion": NEW},
                "podMetadata": {"annotations": crash("segfault", when=f"vllm:{NEW}", message="Segmentation fault")},
            },
        )
        halted = llamas.wait_status(
            NAME, "rollout Halted", lambda s: (s.get("rollout") or {}).get("phase") == "Halted", 120
        )
        rollout = halted["rollout"]
        assert rollout["verdict"] == "Failed"
        assert rollout["reason"] == "CrashLoop", rollout
        assert rollout["step"] == 1
        assert rollout["failedAt"]
        assert rollout["finishedAt"]
        # Back to full count on the previous version, the canary gone.
        all_on(llamas, OLD)
    assert llamas.deployment(f"{NAME}-canary") is None
    stable = llamas.deployment(NAME)
    assert stable is not None
    assert stable.spec.replicas == REPLICAS
    assert f"vllm:{OLD}" in stable.spec.template.spec.containers[0].image
    status = llamas.status(NAME)
    assert status["rollout"]["oldReplicas"] == REPLICAS
    assert status["rollout"]["newReplicas"] == 0
    halted_condition = next(c for c in status["conditions"] if c["type"] == "RolloutHalted")
    assert (halted_condition["status"], halted_condition["reason"]) == ("True", "CrashLoop"), halted_condition
    # kubectl get's Reason column tells the halt once the restored replica serves (PodsReady: Starting before).
    llamas.wait_status(NAME, "Reason CrashLoop", lambda s: s.get("reason") == "CrashLoop", 60)
    # The other three never restarted: same pods, no restart.
    now = {p.metadata.uid: p for p in llamas.pods(NAME)}
    kept = [now[uid] for uid in before if uid in now]
    assert len(kept) == REPLICAS - 1, (before, list(now))
    for pod in kept:
        assert pod.status.container_statuses[0].restart_count == 0, pod.metadata.name
    assert sampler.most_scheduled <= REPLICAS, "a step held more GPUs than the deployment"
    assert (sampler.phases[0], sampler.phases[-1]) == ("Canary", "Halted"), sampler.phases
    reasons = [e.reason for e in llamas.events(NAME)]
    assert {"RolloutStarted", "RolloutHalted"} <= set(reasons), reasons
    # The benchmark figure: the canary's first crash to the halted rollout (whole seconds, as the kubelet records).
    metrics = operator.metrics()
    halted = [
        line
        for line in metrics.splitlines()
        if line.startswith("llamaops_rollouts_total{") and 'result="Halted"' in line
    ]
    assert halted, metrics
    assert 'reason="CrashLoop"' in halted[0]
    halt_s = float(re.search(r"^llamaops_rollout_halt_seconds_sum (\S+)", metrics, re.M)[1])  # type: ignore[index]
    print(f"crash to halted rollout: {halt_s:.0f} s")
    assert halt_s <= 15


def test_same_change_without_a_crash_completes_step_by_step(llamas: Llamas):
    running_four(llamas)
    with Sampler(llamas) as sampler:
        llamas.patch_spec(NAME, {"engine": {"vllmVersion": NEW}})
        canary = llamas.wait_status(
            NAME, "rollout Canary", lambda s: (s.get("rollout") or {}).get("phase") in ("Canary", "Promoting"), 60
        )
        assert canary["rollout"]["replicas"] == REPLICAS
        done = llamas.wait_status(
            NAME, "rollout Completed", lambda s: (s.get("rollout") or {}).get("phase") == "Completed", 240
        )
        all_on(llamas, NEW)
    rollout = done["rollout"]
    assert rollout["verdict"] == "Passed"
    assert (rollout["oldReplicas"], rollout["newReplicas"]) == (0, REPLICAS)
    assert sampler.phases[:3] == ["Canary", "Promoting", "Completed"], sampler.phases
    # Step 1 (spec.rollout.step): one replica, then one more per step, each held for the window: 4 steps, each seen
    # with its old and new counts.
    assert rollout["steps"] == REPLICAS
    assert [step for step, _, _ in sampler.steps] == sorted(step for step, _, _ in sampler.steps), sampler.steps
    for k in range(1, REPLICAS + 1):
        assert (k, REPLICAS - k, k) in sampler.steps, (k, sampler.steps)
    assert sampler.most_scheduled <= REPLICAS, "a step held more GPUs than the deployment"
    assert llamas.deployment(f"{NAME}-canary") is None
    stable = llamas.deployment(NAME)
    assert stable is not None
    assert stable.spec.replicas == REPLICAS
    reasons = [e.reason for e in llamas.events(NAME)]
    assert {"RolloutStarted", "RolloutPromoted", "RolloutStep", "RolloutCompleted"} <= set(reasons), reasons
    assert reasons.count("RolloutStep") == REPLICAS - 2, reasons  # steps 3 and 4 (step 2 is the promotion)


def test_stable_replicas_crash_looping_during_the_canary_neither_halt_nor_stall_it(llamas: Llamas):
    running_four(llamas, {"stabilityWindow": "30s"})
    with Sampler(llamas) as sampler:
        llamas.patch_spec(NAME, {"engine": {"vllmVersion": NEW}})
        llamas.wait_status(NAME, "the canary ready", lambda s: (s.get("rollout") or {}).get("reason") == "Holding", 120)
        # The three stable replicas (the previous version) fall into a CUDA-assert crash loop (KWOK's crash stage,
        # switched on per pod, only while they run the previous version).
        stable_pods = [p for p in llamas.pods(NAME) if "llamaops.dev/track" not in (p.metadata.labels or {})]
        assert len(stable_pods) == REPLICAS - 1
        for pod in stable_pods:
            annotations = crash("embedding_oov", when=f"vllm:{OLD}")
            llamas.core.patch_namespaced_pod(
                pod.metadata.name, llamas.namespace, {"metadata": {"annotations": annotations}}
            )
        # The crash-loop watch looks at the previous configuration's pods (the rollout judges the canary's): it
        # sees the loop and names a stable pod. Nothing it could apply (the previous configuration is the last
        # known good one), so no re-render supersedes the rollout.
        looping = llamas.wait_status(
            NAME,
            "CrashLooping",
            lambda s: any(c["type"] == "CrashLooping" and c["status"] == "True" for c in s.get("conditions", [])),
            120,
        )
        crash_looping = next(c for c in looping["conditions"] if c["type"] == "CrashLooping")
        assert "-canary-" not in crash_looping["message"], crash_looping
        assert looping["rollout"]["phase"] in ("Canary", "Promoting"), looping["rollout"]
        # The canary passes its window on its own and the rest follow, replacing the crashing replicas.
        done = llamas.wait_status(
            NAME, "rollout Completed", lambda s: (s.get("rollout") or {}).get("phase") == "Completed", 300
        )
        all_on(llamas, NEW)
    assert (done["rollout"]["verdict"], done["rollout"]["newReplicas"]) == ("Passed", REPLICAS)
    assert "Halted" not in sampler.phases, sampler.phases
    assert sampler.most_scheduled <= REPLICAS, "a step held more GPUs than the deployment"
    llamas.wait_status(
        NAME,
        "the crash loop over",
        lambda s: any(c["type"] == "CrashLooping" and c["status"] == "False" for c in s.get("conditions", [])),
        120,
    )


def test_a_crash_in_a_later_step_halts_and_the_moved_replicas_return(llamas: Llamas):
    running_four(llamas, {"stabilityWindow": "20s"})
    old_template = llamas.deployment(NAME).spec.template  # type: ignore[union-attr]
    with Sampler(llamas) as sampler:
        llamas.patch_spec(NAME, {"engine": {"vllmVersion": NEW}})

        def promoted_pod() -> Any:
            if (llamas.status(NAME).get("rollout") or {}).get("phase") != "Promoting":
                return None
            moved = [
                p
                for p in llamas.pods(NAME)
                if "llamaops.dev/track" not in (p.metadata.labels or {})
                and f"vllm:{NEW}" in p.spec.containers[0].image
                and not p.metadata.deletion_timestamp
            ]
            return moved[0] if moved else None

        # Step 2 replaces a stable replica with the new version; that one (not the canary) falls into a crash loop.
        pod = wait_for("a stable replica on the new version", promoted_pod, timeout=120, interval=0.3)
        annotations = crash("segfault", message="Segmentation fault")
        llamas.core.patch_namespaced_pod(
            pod.metadata.name, llamas.namespace, {"metadata": {"annotations": annotations}}
        )
        halted = llamas.wait_status(
            NAME, "rollout Halted", lambda s: (s.get("rollout") or {}).get("phase") == "Halted", 120
        )
        rollout = halted["rollout"]
        assert (rollout["reason"], rollout["step"]) == ("CrashLoop", 2), rollout
        assert rollout["message"].startswith("step 2: ")
        # The stable Deployment takes the previous template again (its old ReplicaSet scaled back up).
        all_on(llamas, OLD)
    assert llamas.deployment(f"{NAME}-canary") is None
    stable = llamas.deployment(NAME)
    assert stable is not None
    assert stable.spec.replicas == REPLICAS
    assert stable.spec.template.metadata.annotations == old_template.metadata.annotations
    assert not stable.spec.min_ready_seconds
    assert sampler.most_scheduled <= REPLICAS, "a step held more GPUs than the deployment"
    status = llamas.status(NAME)
    assert (status["rollout"]["oldReplicas"], status["rollout"]["newReplicas"]) == (REPLICAS, 0)
