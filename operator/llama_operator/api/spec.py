"""LlamaDeployment spec. Field descriptions become ``kubectl explain`` text."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from llama_operator.api.autoscaling import AutoscalingSpec
from llama_operator.api.base import ApiModel, cel
from llama_operator.api.rollout import DURATION_PATTERN, RolloutSpec

# Bounds keep CEL cost estimates finite and stop absurd inputs early. Ranges are the schema's minimum and maximum
# (ge/le below), which the API server enforces with its own messages: CEL rules only say what a schema cannot.
NAME_MAX = 253
SHORT_MAX = 256


class SecretKeyRef(ApiModel):
    """A key in a Secret in the deployment's namespace."""

    name: str = Field(min_length=1, max_length=NAME_MAX, description="Name of the Secret.")
    key: str = Field(default="token", min_length=1, max_length=NAME_MAX, description="Key within the Secret.")


class ConfigMapKeyRef(ApiModel):
    """A key in a ConfigMap in the deployment's namespace."""

    name: str = Field(min_length=1, max_length=NAME_MAX, description="Name of the ConfigMap.")
    key: str = Field(
        default="config.json",
        min_length=1,
        max_length=NAME_MAX,
        description="Key whose value is the model's config.json (JSON text).",
    )


class ModelConfigSource(ApiModel):
    """The model's config.json facts, for models outside the built-in catalog or to override catalog values."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("!(has(self.inline) && has(self.configMapRef))", "set either inline or configMapRef, not both"),
                cel("has(self.inline) || has(self.configMapRef)", "set inline or configMapRef"),
            ]
        }
    )

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfigSource:
        # Mirrors the CEL rules, so offline validation refuses what the API server refuses.
        if (self.inline is None) == (self.config_map_ref is None):
            raise ValueError("set exactly one of inline or configMapRef")
        return self

    inline: dict[str, Any] | None = Field(
        default=None,
        description=(
            "A subset of the model's config.json (hidden_size, num_hidden_layers, num_attention_heads, "
            "num_key_value_heads, head_dim, vocab_size, max_position_embeddings, and for MoE/Llama-4 "
            "num_local_experts, interleave_moe_layer_step, attention_chunk_size; Llama-4 may nest them in "
            "text_config). Values here override the catalog entry."
        ),
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    config_map_ref: ConfigMapKeyRef | None = Field(
        default=None,
        description="A ConfigMap key holding the full config.json; read by the operator, not by offline validation.",
    )


class ModelSpec(ApiModel):
    """Which model to serve and where its weights come from."""

    name: str = Field(
        min_length=1,
        max_length=SHORT_MAX,
        description=(
            "Catalog name (e.g. llama-4-scout-17b-16e-instruct) or Hugging Face id (e.g. "
            "meta-llama/Llama-4-Scout-17B-16E-Instruct). Models outside the catalog need spec.model.config."
        ),
    )
    revision: str | None = Field(
        default=None, max_length=SHORT_MAX, description="Hugging Face revision (branch, tag or commit) to pin."
    )
    source: str | None = Field(
        default=None,
        max_length=1024,
        pattern=r"^(hf|pvc|s3)://.+$",
        description=(
            "Where the weights are: hf://<org>/<repo> (downloaded), pvc://<claim>/<path> (mounted), "
            "s3://<bucket>/<prefix>. Defaults to hf://<name> when name is a Hugging Face id."
        ),
    )
    token_secret_ref: SecretKeyRef | None = Field(
        default=None, description="Secret key holding a Hugging Face token for gated repositories."
    )
    config: ModelConfigSource | None = Field(
        default=None, description="config.json facts for a model outside the catalog, or overrides."
    )


class EngineSpec(ApiModel):
    """How vLLM runs the model."""

    vllm_version: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[0-9]+\.[0-9]+(\.[0-9]+)?([a-z0-9.+-]*)$",
        description=(
            "vLLM release the image runs (e.g. 0.8.3). Known-issue checks and the default image use it; "
            "when spec.engine.image is set it must match that image."
        ),
    )
    image: str | None = Field(
        default=None,
        max_length=1024,
        description="Container image override. Default: the operator's patched image for vllmVersion.",
    )
    patched: bool = Field(
        default=True,
        description=(
            "Run the patched vLLM image (its plugin clips Llama-4 chunked-attention block indices and rejects "
            "out-of-vocabulary token ids). Set false to run upstream vLLM unchanged."
        ),
    )
    max_model_len: int | None = Field(
        default=None,
        ge=1,
        le=1 << 30,
        description=(
            "Longest sequence (prompt + output) in tokens, vLLM --max-model-len. Default: the model's maximum, "
            "which may not fit in GPU memory; the planner names the largest value that fits."
        ),
    )
    tensor_parallel_size: int = Field(
        default=1, ge=1, le=1024, description="GPUs a layer is split over (vLLM --tensor-parallel-size)."
    )
    pipeline_parallel_size: int = Field(
        default=1, ge=1, le=1024, description="Pipeline stages (vLLM --pipeline-parallel-size); GPUs = TP x PP."
    )
    gpu_memory_utilization: float = Field(
        default=0.9,
        gt=0,
        le=1,
        description="Fraction of each GPU's memory vLLM may use for weights, activations and KV cache.",
    )
    max_num_seqs: int | None = Field(
        default=None, ge=1, le=1 << 20, description="Most sequences batched at once (vLLM --max-num-seqs)."
    )
    kv_cache_dtype: Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2"] = Field(
        default="auto", description="KV cache element type; auto uses the model dtype, fp8 halves KV memory."
    )
    quantization: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[a-z0-9_-]+$",
        description=(
            "vLLM --quantization for online quantization (e.g. fp8). Pre-quantized checkpoints (…-FP8) need none."
        ),
    )
    extra_args: list[str] = Field(
        default_factory=list,
        max_length=64,
        description=(
            "Further vLLM server arguments, appended verbatim. Flags the operator sets from this spec (model, "
            "parallelism, max model len, memory utilization, …) are refused here."
        ),
        json_schema_extra={"items": {"type": "string", "maxLength": 1024}},
    )


class Toleration(ApiModel):
    """A Kubernetes toleration for the GPU pods."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("self.operator != 'Exists' || !has(self.value)", "operator Exists takes no value"),
            ]
        }
    )

    @model_validator(mode="after")
    def _exists_has_no_value(self) -> Toleration:
        if self.operator == "Exists" and self.value is not None:
            raise ValueError("operator Exists takes no value")
        return self

    key: str | None = Field(default=None, max_length=NAME_MAX, description="Taint key; empty matches all keys.")
    operator: Literal["Equal", "Exists"] = Field(default="Equal", description="Equal or Exists.")
    value: str | None = Field(default=None, max_length=SHORT_MAX, description="Taint value for Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to tolerate; empty matches all effects."
    )
    toleration_seconds: int | None = Field(
        default=None, ge=0, description="For NoExecute: how long the pod stays bound after the taint appears."
    )


class ResourcesSpec(ApiModel):
    """The GPUs each replica runs on."""

    gpu_product: str = Field(
        min_length=1,
        max_length=SHORT_MAX,
        description=(
            "The nvidia.com/gpu.product node label of the GPUs to use, e.g. NVIDIA-H100-80GB-HBM3 or NVIDIA-H200; "
            "pods are scheduled on nodes with this label and memory is planned for this board."
        ),
    )
    gpus_per_node: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="GPUs on each node; default from the GPU catalog (8 for HGX boards).",
    )
    node_count: int | None = Field(
        default=None,
        ge=1,
        le=100000,
        description="GPU nodes available to this deployment; when set, validation checks replicas fit on them.",
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict, max_length=64, description="Extra node labels the GPU pods must match."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, max_length=64, description="Tolerations for the GPU pods (e.g. nvidia.com/gpu taints)."
    )


class RemediationSpec(ApiModel):
    """What the operator does when the server crash-loops."""

    policy: Literal["Auto", "RollbackOnly", "Off"] = Field(
        default="Auto",
        description=(
            "Auto: apply the known remedy for the classified crash (e.g. switch to the patched image or a safe "
            "maxModelLen), else roll back. RollbackOnly: only return to the last known good configuration. "
            "Off: report, never change."
        ),
    )
    max_attempts: int = Field(default=3, ge=0, le=100, description="Remediations allowed within window.")
    window: str = Field(
        default="1h",
        max_length=16,
        pattern=DURATION_PATTERN,
        description="Sliding window for maxAttempts, e.g. 30m or 1h.",
    )


class MonitoringSpec(ApiModel):
    """Metrics for the deployment. Alerts are the Helm chart's (prometheusRule.enabled): one PrometheusRule whose
    rules cover every LlamaDeployment by its namespace and name labels, rather than one per deployment."""

    enabled: bool = Field(default=True, description="Expose vLLM's Prometheus metrics on the serving Service.")
    service_monitor: bool = Field(
        default=False, description="Create a Prometheus-Operator ServiceMonitor (needs its CRDs in the cluster)."
    )
    interval: str = Field(
        default="30s", max_length=16, pattern=r"^[0-9]+(s|m)$", description="Scrape interval, e.g. 15s."
    )


class ValidationSpec(ApiModel):
    """How strictly the operator (and its admission webhook) enforce validation findings."""

    known_issues: Literal["Enforce", "Warn"] = Field(
        default="Enforce",
        description=(
            "Enforce: a configuration that hits a known vLLM crash is refused. Warn: it is admitted with a warning "
            "and deployed; if it then crash-loops, remediation (spec.remediation) repairs it. Other errors (heads, "
            "memory, placement) are always enforced."
        ),
    )


class PodMetadata(ApiModel):
    """Extra labels and annotations for the serving pods (service meshes, cost allocation, policy agents)."""

    labels: dict[str, str] = Field(
        default_factory=dict, description="Labels added to the pods; the operator's own selector labels win."
    )
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations added to the pods.")


class LlamaDeploymentSpec(ApiModel):
    """Desired state: a model served by vLLM on a set of GPUs."""

    model: ModelSpec = Field(description="The model to serve.")
    engine: EngineSpec = Field(description="vLLM version and engine settings.")
    resources: ResourcesSpec = Field(description="GPU type and placement.")
    replicas: int = Field(
        default=1,
        ge=0,
        le=10000,
        description=(
            "Serving replicas; each uses TP x PP GPUs. With spec.autoscaling the HPA sets it (through the scale "
            "subresource) between minReplicas and maxReplicas."
        ),
    )
    remediation: RemediationSpec = Field(default_factory=RemediationSpec, description="Crash-loop remediation policy.")
    monitoring: MonitoringSpec = Field(
        default_factory=MonitoringSpec,
        description="Metrics. Alerts for every LlamaDeployment come with the Helm chart (prometheusRule.enabled).",
    )
    validation: ValidationSpec = Field(
        default_factory=ValidationSpec, description="How strictly validation findings are enforced."
    )
    pod_metadata: PodMetadata = Field(
        default_factory=PodMetadata, description="Extra labels and annotations for the serving pods."
    )
    rollout: RolloutSpec = Field(
        default_factory=RolloutSpec,
        description="How a changed configuration reaches the replicas: Progressive (a canary first) or AllAtOnce.",
    )
    autoscaling: AutoscalingSpec | None = Field(
        default=None,
        description=(
            "Scale the replicas on vLLM's own signals through KEDA and the HPA (present: on). Needs KEDA in the "
            "cluster; the operator renders a ScaledObject, caps it at the GPUs the nodes allocate and pauses it "
            "while the deployment crash-loops or rolls out."
        ),
    )
