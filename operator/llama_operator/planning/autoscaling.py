"""spec.autoscaling: its findings, and the replica limits in effect once the cluster's GPUs cap them (pure).

Precedence of spec.replicas: once the ScaledObject is active the HPA owns spec.replicas (it writes it through the
scale subresource, between the limits below); the operator renders the workload at spec.replicas as ever, so a
spec.replicas outside [minReplicas, maxReplicas] holds only until the HPA's first look, and is warned about.
"""

from __future__ import annotations

from dataclasses import dataclass

from llama_operator.api import LlamaDeploymentSpec
from llama_operator.api.autoscaling import DEFAULT_TARGETS, AutoscalingSpec
from llama_operator.api.rollout import seconds_of
from llama_operator.planning.capacity import GpuFit
from llama_operator.planning.findings import Finding

FIELD = "spec.autoscaling"
MIN_ABOVE_MAX = "autoscaling_min_above_max"
ZERO_NOT_ALLOWED = "scale_to_zero_not_allowed"
FROM_ZERO = "scale_from_zero_needs_external_signal"
OUTSIDE_RANGE = "replicas_outside_autoscaling_range"
TARGET_ABOVE_ONE = "autoscaling_kv_cache_target_above_one"
WINDOW_TOO_LONG = "autoscaling_window_above_hpa_limit"
POLLING_ZERO = "autoscaling_polling_interval_zero"
# The HPA API refuses a stabilizationWindowSeconds above one hour (autoscaling/v2 validation).
HPA_WINDOW_MAX_S = 3600


def target_of(spec: AutoscalingSpec) -> float:
    """The per-replica target: the spec's, else the metric's default."""
    return spec.target if spec.target is not None else DEFAULT_TARGETS[spec.metric]


def check_autoscaling(spec: LlamaDeploymentSpec) -> list[Finding]:
    """spec.autoscaling against itself and spec.replicas (the GPUs are planning.capacity's)."""
    scaling = spec.autoscaling
    if scaling is None:
        return []
    low, high = scaling.min_replicas, scaling.max_replicas
    findings = []
    if low > high:
        findings.append(
            Finding(
                MIN_ABOVE_MAX,
                "error",
                f"{FIELD}.minReplicas",
                f"minReplicas {low} is above maxReplicas {high}: no replica count satisfies both (KEDA refuses such "
                "a ScaledObject)",
                f"set spec.autoscaling.minReplicas to at most {high}, or raise maxReplicas to at least {low}",
            )
        )
    if low == 0 and not scaling.scale_to_zero:
        findings.append(
            Finding(
                ZERO_NOT_ALLOWED,
                "error",
                f"{FIELD}.minReplicas",
                "minReplicas 0 scales the deployment to zero replicas when idle, which spec.autoscaling.scaleToZero "
                "(default false) does not allow: a cold start reloads the weights for minutes",
                "set spec.autoscaling.scaleToZero: true to allow it, or minReplicas to 1 or more",
            )
        )
    if low == 0 and scaling.scale_to_zero:
        findings.append(
            Finding(
                FROM_ZERO,
                "warning",
                f"{FIELD}.scaleToZero",
                f"at zero replicas no vLLM engine runs, so {scaling.metric}'s series are gone and KEDA reads 0: "
                "nothing in vLLM's own signals scales the deployment back up from zero",
                "scale it up from outside when requests come (kubectl scale llamadeployment NAME --replicas 1, or "
                "a gateway that does), or keep minReplicas at 1",
            )
        )
    if scaling.metric == "KVCacheUsage" and target_of(scaling) > 1:
        findings.append(
            Finding(
                TARGET_ABOVE_ONE,
                "warning",
                f"{FIELD}.target",
                f"target {target_of(scaling):g} for KVCacheUsage, a fraction from 0 to 1 per replica: the signal "
                "never reaches it, so autoscaling never scales up",
                "write the target as a fraction, e.g. 0.8 for 80%",
            )
        )
    for name, value in (
        ("scaleUpStabilization", scaling.scale_up_stabilization),
        ("scaleDownCooldown", scaling.scale_down_cooldown),
    ):
        if seconds_of(value) > HPA_WINDOW_MAX_S:
            findings.append(
                Finding(
                    WINDOW_TOO_LONG,
                    "error",
                    f"{FIELD}.{name}",
                    f"{name} {value} ({seconds_of(value)} s) is longer than the {HPA_WINDOW_MAX_S} s the HPA allows "
                    "a stabilization window: KEDA's HPA would be refused",
                    f"set spec.autoscaling.{name} to 1h or less",
                )
            )
    if seconds_of(scaling.polling_interval) == 0:
        findings.append(
            Finding(
                POLLING_ZERO,
                "error",
                f"{FIELD}.pollingInterval",
                "pollingInterval 0: KEDA polls at least every second (its ScaledObject refuses 0)",
                "set spec.autoscaling.pollingInterval to 1s or more, e.g. 30s",
            )
        )
    if low <= high and not low <= spec.replicas <= high:
        near = min(max(spec.replicas, low), high)
        findings.append(
            Finding(
                OUTSIDE_RANGE,
                "warning",
                "spec.replicas",
                f"spec.replicas {spec.replicas} is outside spec.autoscaling's [{low}, {high}]: with autoscaling "
                f"the HPA owns spec.replicas and sets it to {near} at its first look",
                "leave spec.replicas out of the manifest you apply (the HPA sets it), or set it within the range",
            )
        )
    return findings


@dataclass(frozen=True, slots=True)
class Limits:
    """minReplicaCount and maxReplicaCount of the ScaledObject, and why."""

    min_replicas: int
    max_replicas: int
    requested_max: int
    gpu_limit: int | None  # replicas the matching nodes can allocate; None: not known
    capped: bool
    message: str


def limits(spec: AutoscalingSpec, fit: GpuFit | None) -> Limits:
    """The limits in effect: maxReplicas capped at the replicas the matching nodes' allocatable GPUs hold. Never
    below minReplicas (the user's floor; the Capacity condition says when the nodes cannot hold it) nor below 1
    (KEDA's least maxReplicaCount)."""
    low, asked = spec.min_replicas, spec.max_replicas
    if fit is None:
        message = (
            f"between {low} and {asked} replicas; the GPU nodes are not known (the operator needs list and watch "
            "on nodes), so maxReplicas is not capped"
        )
        return Limits(low, asked, asked, None, False, message)
    if fit.replicas >= asked:
        return Limits(low, asked, asked, fit.replicas, False, f"between {low} and {asked} replicas")
    cap = max(fit.replicas, low, 1)
    floor = "" if cap == fit.replicas else f" (no fewer than {'minReplicas' if cap == low else 'one'})"
    message = f"maxReplicas {asked} capped at {cap}{floor}: {fit.describe()}"
    return Limits(low, cap, asked, fit.replicas, True, message)
