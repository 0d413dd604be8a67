"""LlamaDeployment status, written by the operator."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from llama_operator.api.base import ApiModel

Severity = Literal["error", "warning", "info"]
Phase = Literal["Pending", "Invalid", "Progressing", "Running", "Degraded", "CrashLooping", "Failed"]


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
    """A standard Kubernetes condition: Validated, Progressing, Available, Degraded or CrashLooping."""

    type: str = Field(max_length=64, description="Condition type.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(default="", max_length=128, description="CamelCase reason for the last transition.")
    message: str = Field(default="", max_length=4096, description="Human-readable details.")
    last_transition_time: str | None = Field(default=None, description="When status last changed (RFC 3339).")
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
    weights_gib: float = Field(default=0, description="Model weights per GPU (all experts), over TP x PP.")
    reserve_gib: float = Field(default=0, description="Activations, CUDA graphs, communication buffers.")
    kv_cache_gib: float = Field(default=0, description="Left for the KV cache.")
    kv_cache_rule: str = Field(
        default="",
        max_length=32,
        description=(
            "How vLLM sizes chunked-local layers' KV cache: FullLength (every layer holds maxModelLen tokens; "
            "vLLM < 0.14) or HybridChunkedLocal (one attention chunk plus a batch; vLLM >= 0.14)."
        ),
    )
    kv_bytes_per_token: int = Field(default=0, description="KV cache bytes per token per GPU, all layers.")
    kv_cache_tokens: int = Field(default=0, description="Tokens the KV cache holds per replica.")
    max_model_len_that_fits: int = Field(
        default=0, description="Largest max_model_len one full-length sequence fits in (capped by the model)."
    )
    max_concurrent_full_length_sequences: float = Field(
        default=0, description="KV cache tokens / effective max_model_len."
    )


class LastKnownGood(StatusModel):
    """The last configuration that served traffic, for rollback."""

    generation: int | None = Field(default=None, description="Spec generation.")
    image: str = Field(default="", max_length=1024, description="Container image.")
    args: list[str] = Field(default_factory=list, description="vLLM arguments.")
    time: str | None = Field(default=None, description="When it was last seen healthy (RFC 3339).")


class Remediation(StatusModel):
    """One repair the operator made."""

    time: str = Field(description="When (RFC 3339).")
    signature: str = Field(max_length=128, description="Classified crash, a known-issue id.")
    action: str = Field(max_length=128, description="What was done, e.g. SwitchToPatchedImage or Rollback.")
    before: str = Field(default="", max_length=4096, description="The relevant settings before.")
    after: str = Field(default="", max_length=4096, description="The relevant settings after.")


class LlamaDeploymentStatus(StatusModel):
    """Observed state, written by the operator."""

    phase: Phase | None = Field(default=None, description="Summary phase.")
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
