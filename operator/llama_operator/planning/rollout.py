"""The rollout policy of a spec: the policy in force, the startup budget a replica has, and the findings on
spec.rollout (pure)."""

from __future__ import annotations

from llama_operator.api import LlamaDeploymentSpec, MemoryPlan
from llama_operator.api.rollout import seconds_of
from llama_operator.planning.findings import Finding

# Weights load at roughly 1 GiB/s from a local cache and far slower from the hub: allow 10 minutes plus 30 s per
# GiB of weights per replica, capped at 2 hours, before the kubelet gives up on start-up (render/deployment.py's
# start-up probe) and before a progressive rollout calls a canary that is not ready a failure.
STARTUP_BASE_S = 600
STARTUP_PER_GIB_S = 30
STARTUP_MAX_S = 7200


def startup_budget_s(plan: MemoryPlan | None, gpus: int) -> int:
    """Seconds a replica of ``gpus`` GPUs may take to start."""
    weights_gib = (plan.weights_gib if plan else 0.0) * gpus
    return min(STARTUP_MAX_S, STARTUP_BASE_S + int(weights_gib * STARTUP_PER_GIB_S))


def policy_of(spec: LlamaDeploymentSpec) -> str:
    """The policy in force: the spec's, else Progressive for more than one replica (single-node replicas through a
    canary Deployment, multi-node replicas through their LeaderWorkerSet's partition)."""
    if spec.replicas <= 1:
        return "AllAtOnce"
    return spec.rollout.policy or "Progressive"


def check_rollout(spec: LlamaDeploymentSpec, plan: MemoryPlan | None, gpus: int) -> list[Finding]:
    """spec.rollout against the replicas, the startup budget and what can roll progressively."""
    rollout = spec.rollout
    if (rollout.policy or "Progressive") != "Progressive" or spec.replicas <= 1:
        return []
    findings = []
    if rollout.step >= spec.replicas:
        findings.append(
            Finding(
                "rollout_step_not_below_replicas",
                "warning",
                "spec.rollout.step",
                f"step {rollout.step} moves all {spec.replicas} replicas at once: no replica keeps the previous "
                "configuration to compare with or return to.",
                f"Set spec.rollout.step below {spec.replicas}, e.g. 1.",
            )
        )
    budget = startup_budget_s(plan, gpus)
    if rollout.progress_deadline is not None and seconds_of(rollout.progress_deadline) < budget:
        findings.append(
            Finding(
                "rollout_deadline_shorter_than_startup",
                "error",
                "spec.rollout.progressDeadline",
                f"progressDeadline {rollout.progress_deadline} ({seconds_of(rollout.progress_deadline)} s) is "
                f"shorter than the {budget} s a replica of {gpus} GPU(s) may take to start: a canary that loads "
                "slowly but would serve would be halted.",
                f"Set spec.rollout.progressDeadline to at least {budget}s, or leave it out (the startup budget).",
            )
        )
    return findings
