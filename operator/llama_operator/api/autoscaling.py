"""Autoscaling on vLLM's own signals: the spec's policy (spec.autoscaling) and what is in effect (status.autoscaling).

The operator does not run a scaling loop of its own: it renders a KEDA ScaledObject whose Prometheus trigger drives
the HPA of the kube-controller-manager, which writes spec.replicas through the LlamaDeployment's scale subresource.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from llama_operator.api.base import ApiModel
from llama_operator.api.rollout import DURATION_PATTERN

AutoscalingMetric = Literal["RequestsWaiting", "KVCacheUsage", "TimeToFirstToken"]
# The per-replica target when the spec names none: a few queued requests, a KV cache 80% full, a p90 time to first
# token of 2 s.
DEFAULT_TARGETS: dict[str, float] = {"RequestsWaiting": 5.0, "KVCacheUsage": 0.8, "TimeToFirstToken": 2.0}


class AutoscalingSpec(ApiModel):
    """Scale the replicas on one of vLLM's signals, through KEDA (its Prometheus scaler) and the cluster's HPA.

    Present: autoscaling is on, and the HPA owns spec.replicas (it writes it through the scale subresource between
    minReplicas and maxReplicas); leave spec.replicas out of what you apply, or your apply and the HPA take turns."""

    min_replicas: int = Field(
        default=1,
        ge=0,
        le=10000,
        description="Fewest replicas. 0 (scale to zero when idle) needs scaleToZero: true.",
    )
    max_replicas: int = Field(
        ge=1,
        le=10000,
        description=(
            "Most replicas. The operator caps it at the replicas the cluster's matching GPU nodes can allocate "
            "(status.autoscaling says so, condition Autoscaling reason LimitedByGPUs)."
        ),
    )
    scale_to_zero: bool = Field(
        default=False,
        description=(
            "Allow minReplicas 0. vLLM's signals vanish with its last engine, so nothing in them scales a deployment "
            "back up from zero: something else must (a request to scale, another trigger)."
        ),
    )
    metric: AutoscalingMetric = Field(
        default="RequestsWaiting",
        description=(
            "The vLLM signal: RequestsWaiting (vllm:num_requests_waiting, requests queued per replica), "
            "KVCacheUsage (vllm:kv_cache_usage_perc, vllm:gpu_cache_usage_perc before vLLM 0.9: the fraction of "
            "the KV cache in use per replica, 0 to 1), TimeToFirstToken (the p90 of "
            "vllm:time_to_first_token_seconds over window, in seconds)."
        ),
    )
    target: float | None = Field(
        default=None,
        gt=0,
        le=1e6,
        description=(
            "The value per replica the HPA keeps the signal at: requests waiting per replica (default 5), KV-cache "
            "fraction per replica (default 0.8), or p90 time to first token in seconds (default 2)."
        ),
    )
    window: str = Field(
        default="2m",
        max_length=16,
        pattern=DURATION_PATTERN,
        description="The rate window of TimeToFirstToken's p90, e.g. 2m (at least 4 Prometheus scrape intervals).",
    )
    polling_interval: str = Field(
        default="30s",
        max_length=16,
        pattern=DURATION_PATTERN,
        description="How often KEDA asks Prometheus, e.g. 30s.",
    )
    scale_up_stabilization: str = Field(
        default="0s",
        max_length=16,
        pattern=DURATION_PATTERN,
        description="The HPA scales up to the lowest recommendation of this window (0s: at once), e.g. 1m.",
    )
    scale_down_cooldown: str = Field(
        default="5m",
        max_length=16,
        pattern=DURATION_PATTERN,
        description=(
            "The HPA scales down to the highest recommendation of this window, and KEDA waits this long after the "
            "last activity before scaling to zero, e.g. 10m. A replica reloads its weights for minutes: keep it long."
        ),
    )
    prometheus_address: str | None = Field(
        default=None,
        max_length=1024,
        pattern=r"^https?://[^\s/]+(/\S*)?$",
        description=(
            "The Prometheus server KEDA queries (http(s)://host:port). Default: the operator's own Prometheus "
            "(LLAMAOPS_PROMETHEUS_URL, the chart's prometheus.url)."
        ),
    )


class AutoscalingStatus(ApiModel):
    """What autoscaling has in effect: the ScaledObject as the operator last rendered it."""

    model_config = ConfigDict(extra="ignore")

    active: bool = Field(default=False, description="KEDA scales this deployment now (rendered and not paused).")
    paused: bool = Field(
        default=False, description="Rendered with autoscaling.keda.sh/paused: a crash loop or a rollout."
    )
    min_replicas: int = Field(default=0, description="minReplicaCount of the ScaledObject.")
    max_replicas: int = Field(default=0, description="maxReplicaCount of the ScaledObject (after the GPU cap).")
    requested_max_replicas: int = Field(default=0, description="spec.autoscaling.maxReplicas.")
    gpu_limit: int | None = Field(
        default=None,
        description="Replicas the matching GPU nodes can allocate (absent when the nodes are not known).",
    )
    metric: str = Field(default="", max_length=64, description="The vLLM signal scaled on.")
    query: str = Field(default="", max_length=4096, description="The PromQL query KEDA runs.")
    message: str = Field(default="", max_length=4096, description="Why the limits are what they are.")
