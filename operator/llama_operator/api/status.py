"""LlamaDeployment status, written by the operator."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field
from pydantic.config import JsonDict

from llama_operator.api.autoscaling import AutoscalingStatus
from llama_operator.api.base import ApiModel
from llama_operator.api.rollout import RolloutStatus

Severity = Literal["error", "warning", "info"]
Phase = Literal["Pending", "Invalid", "Progressing", "Running", "Degraded", "CrashLooping", "Failed"]
RemediationResult = Literal["Pending", "Recovered", "Failed", "Superseded"]
CrashLoopSource = Literal["PodStatus", "Prometheus"]
# RFC 3339 timestamps, as the operator writes them (2006-01-02T15:04:05Z): the API server refuses anything else.
DATE_TIME: JsonDict = {"format": "date-time"}


class StatusModel(ApiModel):
    # Status is written by older and newer operators alike: ignore fields this version does not know.
    model_config = ConfigDict(extra="ignore")


class Finding(StatusModel):
    """One result of validation: a problem, a hazard or a note, with where and how to fix it."""

    code: str = Field(max_length=128, description="Stable snake_case identifier, e.g. tp_incompatible_with_kv_heads.")
    severity: Severity = Field(description="error blocks the deployment; warning and info do not.")
    field: str = Field(
        default="", max_length=512, description="Path of the spec field concerned, e.g. spec.engine.maxModelLen."
    )
    message: str = Field(max_length=4096, description="What is wrong, with the numbers that show it.")
    fix: str = Field(default="", max_length=4096, description="What to change.")


class Condition(StatusModel):
    """A standard Kubernetes condition: Validated, Progressing, Available, Degraded, PodsReady, Capacity,
    CrashLooping or Autoscaling."""

    type: str = Field(max_length=64, description="Condition type.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(default="", max_length=128, description="CamelCase reason for the last transition.")
    message: str = Field(default="", max_length=4096, description="Human-readable details.")
    last_transition_time: str | None = Field(
        default=None, description="When status last changed (RFC 3339).", json_schema_extra=DATE_TIME
    )
    observed_generation: int | None = Field(default=None, description="Spec generation the condition is about.")


class EffectiveConfig(StatusModel):
    """What the operator actually runs, after defaults and remedies."""

    image: str = Field(default="", max_length=1024, description="Container image.")
    args: list[str] = Field(default_factory=list, description="vLLM server arguments.")
    tensor_parallel_size: int = Field(default=1, description="Tensor-parallel size.")
    pipeline_parallel_size: int = Field(default=1, description="Pipeline-parallel size.")
    gpus_per_replica: int = Field(default=1, description="GPUs each replica uses (TP x PP).")
    nodes_per_replica: int = Field(default=1, description="Nodes each replica spans.")
    max_model_len: int | None = Field(default=None, description="Effective vLLM --max-model-len.")


class MemoryPlan(StatusModel):
    """Per-GPU memory plan (GiB) and the context it allows."""

    gpu_memory_gib: float = Field(default=0, description="GPU memory as the catalog lists it.")
    usable_gib: float = Field(default=0, description="GPU memory times gpuMemoryUtilization.")
    weights_gib: float = Field(
        default=0,
        description="Model weights per GPU (all experts) of the binding pipeline stage, split over TP.",
    )
    reserve_gib: float = Field(
        default=0, description="Estimated activations, CUDA graphs and communication buffers (central estimate)."
    )
    reserve_band_gib: float = Field(
        default=0,
        description=(
            "Uncertainty of the reserve, +/- GiB: vLLM measures it only at startup. Suggestions use the reserve "
            "plus the band; refusals the reserve minus the band."
        ),
    )
    kv_cache_gib: float = Field(default=0, description="Left for the KV cache at the pessimistic end of the band.")
    kv_cache_rule: str = Field(
        default="",
        max_length=32,
        description=(
            "How vLLM sizes chunked-local layers' KV cache: FullLength (every layer holds maxModelLen tokens; "
            "vLLM < 0.14, or the hybrid KV-cache manager off) or HybridChunkedLocal (one attention chunk plus the "
            "in-flight batches; vLLM >= 0.14)."
        ),
    )
    kv_bytes_per_token: int = Field(default=0, description="KV cache bytes per token per GPU, all layers.")
    kv_cache_tokens: int = Field(default=0, description="Tokens the KV cache holds per replica.")
    max_model_len_that_fits: int = Field(
        default=0,
        description=(
            "Largest max_model_len one full-length sequence fits in at the pessimistic end of the band (capped by "
            "the model): the value the planner suggests."
        ),
    )
    max_model_len_that_may_fit: int = Field(
        default=0,
        description=(
            "Largest max_model_len that fits at the optimistic end of the band; a longer maxModelLen is refused, "
            "one between the two is admitted with a warning."
        ),
    )
    max_concurrent_full_length_sequences: float = Field(
        default=0, description="KV cache tokens / effective max_model_len."
    )


class LastKnownGood(StatusModel):
    """The last configuration that served traffic, for rollback."""

    generation: int | None = Field(default=None, description="Spec generation.")
    image: str = Field(default="", max_length=1024, description="Container image.")
    args: list[str] = Field(default_factory=list, description="vLLM arguments.")
    max_model_len: int | None = Field(
        default=None, description="Its vLLM --max-model-len (absent in records of older operators: read from args)."
    )
    time: str | None = Field(
        default=None, description="When it was last seen healthy (RFC 3339).", json_schema_extra=DATE_TIME
    )


class Remediation(StatusModel):
    """One repair the operator made."""

    time: str = Field(description="When (RFC 3339).", json_schema_extra=DATE_TIME)
    signature: str = Field(max_length=128, description="Classified crash, a known-issue id.")
    action: str = Field(max_length=128, description="What was done, e.g. SwitchToPatchedImage or Rollback.")
    before: str = Field(default="", max_length=4096, description="The relevant settings before.")
    after: str = Field(default="", max_length=4096, description="The relevant settings after.")
    known_issue: str | None = Field(
        default=None, max_length=128, description="Known-issue id the crash matched, when one did."
    )
    generation: int | None = Field(
        default=None, description="Spec generation it was made for; attempts count per generation."
    )
    result: RemediationResult | None = Field(
        default=None,
        description=(
            "Pending until the crash loop ends (Recovered), another repair or giving up follows (Failed), or the "
            "spec changes (Superseded)."
        ),
    )


class CrashLoop(StatusModel):
    """The crash loop the operator is handling: what it saw, from where, and when."""

    source: CrashLoopSource = Field(description="Where the crash loop was seen: PodStatus or Prometheus.")
    signature: str = Field(max_length=128, description="Classified crash, e.g. cuda_device_assert_index_oob.")
    known_issue: str | None = Field(default=None, max_length=128, description="Matched known-issue id, if any.")
    detail: str = Field(default="", max_length=1024, description="The line of the crash output that tells most.")
    pod: str = Field(default="", max_length=253, description="Pod whose termination was classified.")
    container: str = Field(default="", max_length=253, description="Container whose termination was classified.")
    exit_code: int | None = Field(default=None, description="Exit code of that termination.")
    restarts: int = Field(default=0, description="Restarts seen across the deployment's crashing containers.")
    first_crash_time: str | None = Field(
        default=None, description="Earliest crash seen in this loop (RFC 3339).", json_schema_extra=DATE_TIME
    )
    detected_time: str | None = Field(
        default=None, description="When the operator detected the loop (RFC 3339).", json_schema_extra=DATE_TIME
    )


class RemediationOverrides(StatusModel):
    """Settings the operator runs instead of the user's after a remediation, until the spec changes.

    The user's spec is never rewritten: these apply on top of it, and a new spec generation drops them."""

    generation: int = Field(description="Spec generation they apply to.")
    action: str = Field(max_length=128, description="The remediation that set them last.")
    patched: bool | None = Field(default=None, description="Run the patched image (its plugin's guards on).")
    image: str | None = Field(default=None, max_length=1024, description="Container image to run.")
    max_model_len: int | None = Field(
        default=None, description="vLLM --max-model-len to run with (a rollback's: lastKnownGood's)."
    )
    args: list[str] | None = Field(
        default=None, description="vLLM arguments verbatim (a rollback to lastKnownGood's), replacing the planned ones."
    )


class RemediationState(StatusModel):
    """Where crash-loop remediation stands for the current spec generation."""

    generation: int | None = Field(default=None, description="Spec generation this state is about.")
    attempts: int = Field(
        default=0, description="Remediations made for this generation within spec.remediation.window."
    )
    exhausted: bool = Field(
        default=False,
        description="No more remediations for this generation (attempts used up or no remedy left): phase Failed.",
    )
    last_action_time: str | None = Field(
        default=None, description="When the last remediation was made (RFC 3339).", json_schema_extra=DATE_TIME
    )
    crash_loop: CrashLoop | None = Field(default=None, description="The crash loop being handled; empty when none.")


class LlamaDeploymentStatus(StatusModel):
    """Observed state, written by the operator."""

    phase: Phase | None = Field(default=None, description="Summary phase.")
    reason: str | None = Field(
        default=None,
        max_length=128,
        description=(
            "What most explains the phase, in one CamelCase word (empty when nothing is wrong or pending): "
            "ValidationFailed, the CrashLooping condition's reason while it is True (e.g. "
            "RemediationWaitingForCapacity), the PodsReady condition's while it is False (e.g. Unschedulable, "
            "ImagePullFailed, StartupProbeFailing), the Degraded condition's while it is True."
        ),
    )
    observed_generation: int | None = Field(default=None, description="Last spec generation processed.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Standard conditions.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    findings: list[Finding] = Field(default_factory=list, description="Validation findings for this generation.")
    effective: EffectiveConfig | None = Field(default=None, description="What runs.")
    plan: MemoryPlan | None = Field(default=None, description="Per-GPU memory plan.")
    replicas: int | None = Field(default=None, description="Replicas created (scale subresource).")
    ready_replicas: int | None = Field(default=None, description="Replicas serving.")
    selector: str | None = Field(default=None, description="Label selector of the pods (scale subresource).")
    endpoint: str | None = Field(default=None, description="In-cluster URL of the OpenAI-compatible API.")
    last_known_good: LastKnownGood | None = Field(default=None, description="Rollback target.")
    remediations: list[Remediation] = Field(default_factory=list, description="Repairs made, oldest first.")
    overrides: RemediationOverrides | None = Field(
        default=None, description="Settings remediation runs instead of the spec's, for the current generation."
    )
    remediation: RemediationState | None = Field(default=None, description="Crash-loop remediation state.")
    rollout: RolloutStatus | None = Field(default=None, description="The progressive rollout of this generation.")
    autoscaling: AutoscalingStatus | None = Field(
        default=None, description="What autoscaling has in effect (spec.autoscaling); absent when it is off."
    )
