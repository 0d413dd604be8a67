"""Progressive rollout: the spec's policy (spec.rollout) and where a rollout stands (status.rollout).

Vocabulary after Argo Rollouts and Flagger: a canary of ``step`` replicas runs the new configuration beside the
stable replicas, is held for a stability window, then promoted (the rest follow ``step`` at a time, each step held
for the window, as Argo's steps and Flagger's stepWeight) or halted (the moved replicas return to the last known good
configuration)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import ConfigDict, Field

from llama_operator.api.base import ApiModel

RolloutPolicy = Literal["Progressive", "AllAtOnce"]
RolloutPhase = Literal["Canary", "Promoting", "Completed", "Halted", "Superseded"]
RolloutVerdict = Literal["Pending", "Passed", "Failed"]
DURATION_PATTERN = r"^[0-9]+(s|m|h)$"
_DURATION = re.compile(DURATION_PATTERN)


def seconds_of(text: str) -> int:
    """A duration of the form the CRD's pattern allows ("90s", "5m", "1h") in seconds."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(f"duration must be <number>s|m|h, got {text!r}")
    return int(match[0][:-1]) * {"s": 1, "m": 60, "h": 3600}[match[1]]


class AnalysisSpec(ApiModel):
    """The canary's metric analysis (after Flagger's metric checks and Argo Rollouts' AnalysisTemplate): over the
    stability window, vLLM's own error and latency metrics of the canary pods are compared with the stable pods'."""

    enabled: bool | None = Field(
        default=None,
        description=(
            "Judge the canary on vLLM's metrics from Prometheus. Default: on when the operator has Prometheus "
            "(LLAMAOPS_PROMETHEUS_URL); without Prometheus there is nothing to judge on."
        ),
    )
    max_error_rate_increase_percent: float = Field(
        default=1.0,
        ge=0,
        le=100,
        description=(
            "Most the canary's error rate (failed / all requests, in percent) may exceed the stable replicas' "
            "before the rollout halts (MetricRegression), in percentage points, e.g. 1: stable 0.5% allows 1.5%."
        ),
    )
    max_latency_ratio: float = Field(
        default=1.5,
        ge=1,
        le=100,
        description=(
            "Most the canary's p90 time to first token and p90 end-to-end latency may be, as a multiple of the "
            "stable replicas', before the rollout halts (MetricRegression), e.g. 1.5."
        ),
    )
    min_requests: int = Field(
        default=50,
        ge=1,
        le=1_000_000,
        description=(
            "Requests the canary and the stable replicas must each have served in the window for a verdict; "
            "with fewer the analysis is inconclusive and never halts the rollout (crash loop and readiness "
            "still decide)."
        ),
    )


class RolloutSpec(ApiModel):
    """How a change of the pod template (image, vLLM version, arguments, model revision) reaches the replicas."""

    policy: RolloutPolicy | None = Field(
        default=None,
        description=(
            "Progressive: first `step` replicas run the change (a canary Deployment, or a LeaderWorkerSet's highest "
            "groups), held for stabilityWindow, then the rest `step` at a time, each step held for stabilityWindow; "
            "a crash loop, a replica not ready within progressDeadline, or a regression of the canary's vLLM error "
            "rate or latency against the stable replicas (analysis) halts it and returns the moved replicas to the "
            "previous configuration. AllAtOnce: every replica is replaced one at a time at once. Default: "
            "Progressive when replicas > 1 (a LeaderWorkerSet's groups move with its partition)."
        ),
    )
    step: int = Field(
        default=1,
        ge=1,
        le=10000,
        description=(
            "Replicas moved to the new configuration per step: the canary first, then the rest this many at a time, "
            "each step held for stabilityWindow."
        ),
    )
    stability_window: str = Field(
        default="5m",
        max_length=16,
        pattern=DURATION_PATTERN,
        description=(
            "How long the canary must serve (all ready, no crash, no metric regression) before the rest follow, "
            "e.g. 5m; also the window the metric analysis compares over."
        ),
    )
    progress_deadline: str | None = Field(
        default=None,
        max_length=16,
        pattern=DURATION_PATTERN,
        description=(
            "How long a canary replica may take to become ready before the rollout halts. Default: the startup "
            "budget the kubelet allows the replica (10 minutes plus 30 s per GiB of weights); a shorter deadline "
            "is refused, as it would halt a healthy replica that loads slowly."
        ),
    )
    analysis: AnalysisSpec = Field(
        default_factory=AnalysisSpec,
        description=(
            "The canary's metric analysis: vLLM's error rate and p90 latencies of the canary against the stable "
            "replicas over the stability window; a regression halts the rollout."
        ),
    )


class RolloutStatus(ApiModel):
    """Where the progressive rollout of the current spec generation stands."""

    model_config = ConfigDict(extra="ignore")

    generation: int = Field(description="Spec generation being rolled out.")
    phase: RolloutPhase = Field(
        description=(
            "Canary (the first step runs the new configuration), Promoting (the rest follow), Completed, "
            "Halted (returned to the previous configuration until the spec changes), or Superseded (a crash-loop "
            "remediation re-rendered this generation for every replica)."
        )
    )
    verdict: RolloutVerdict = Field(default="Pending", description="The canary's verdict: Pending, Passed, Failed.")
    step: int = Field(
        default=1, description="The step in progress, of `steps`: 1 the canary, then `spec.rollout.step` more each."
    )
    steps: int = Field(
        default=0, description="How many steps: the canary, then the rest `spec.rollout.step` at a time."
    )
    replicas: int = Field(default=0, description="Replicas the deployment holds (spec.replicas).")
    old_replicas: int = Field(default=0, description="Replicas set to run the previous configuration.")
    new_replicas: int = Field(default=0, description="Replicas set to run the new configuration.")
    old_config_hash: str = Field(default="", max_length=64, description="Pod template hash of the previous config.")
    new_config_hash: str = Field(default="", max_length=64, description="Pod template hash of the new config.")
    reason: str = Field(default="", max_length=128, description="CamelCase reason of the last transition or wait.")
    message: str = Field(default="", max_length=4096, description="Human-readable details.")
    started_at: str | None = Field(
        default=None, description="When the rollout started (RFC 3339).", json_schema_extra={"format": "date-time"}
    )
    finished_at: str | None = Field(
        default=None,
        description="When it completed or halted (RFC 3339).",
        json_schema_extra={"format": "date-time"},
    )
    failed_at: str | None = Field(
        default=None,
        description=(
            "When the canary failed: its first crash, its progress deadline, or when its metric regression was "
            "seen (RFC 3339)."
        ),
        json_schema_extra={"format": "date-time"},
    )
