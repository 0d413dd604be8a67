"""``validate``: one LlamaDeployment document in, every finding, the memory plan and the effective config out.

Pure and total: whatever the input (any parsed YAML/JSON value), it returns a ``ValidationResult`` and never
raises. The CLI, the admission webhook and the operator all call it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import ValidationError

from llama_operator.api import API_VERSION, KIND, EffectiveConfig, LlamaDeployment, MemoryPlan
from llama_operator.knowledge import Knowledge, ModelFacts, load_knowledge
from llama_operator.knowledge.describe import describe
from llama_operator.knowledge.gpus import GpuFacts
from llama_operator.knowledge.issues import parse_version
from llama_operator.planning.args import check_extra_args, effective_config
from llama_operator.planning.autoscaling import check_autoscaling
from llama_operator.planning.capacity import CapacityVerdict, capacity_of
from llama_operator.planning.depth import check_depth
from llama_operator.planning.engine import EngineSettings, engine_settings
from llama_operator.planning.findings import SEVERITY_ORDER, Finding, tokens
from llama_operator.planning.issues import check_known_issues
from llama_operator.planning.kubernetes import check_kubernetes_fields
from llama_operator.planning.memory import MemoryBreakdown, plan_memory
from llama_operator.planning.parallelism import (
    check_heads,
    check_placement,
    nodes_per_replica,
    valid_tensor_parallel_sizes,
)
from llama_operator.planning.resolve import resolve
from llama_operator.planning.rollout import check_rollout
from llama_operator.planning.schema import dedupe, findings_from_validation_error

MAX_MODEL_LEN = "spec.engine.maxModelLen"


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """Findings (errors first), and when the spec could be planned, the effective config and memory plan."""

    name: str | None
    namespace: str | None
    findings: tuple[Finding, ...]
    effective: EffectiveConfig | None = None
    plan: MemoryPlan | None = None
    # Whether the cluster's GPU nodes can hold it (planning.capacity); None when it is not judged (invalid).
    capacity: CapacityVerdict | None = None
    _errors: int = field(default=0, repr=False)

    @property
    def valid(self) -> bool:
        """No error findings: the deployment may proceed (warnings and infos do not block)."""
        return self._errors == 0

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(finding for finding in self.findings if finding.severity == "error")

    def refused(self, finding: Finding) -> ValidationResult:
        """This result with one more finding, found outside the planner (the API server refused a rendered child):
        an error makes the result invalid; the effective config and plan stay for status."""
        findings = [*self.findings, finding]
        return _result((self.name, self.namespace), findings, self.effective, self.plan, self.capacity)

    def as_dict(self) -> dict[str, Any]:
        """JSON form; camelCase keys like the CRD's status."""
        return {
            "name": self.name,
            "namespace": self.namespace,
            "valid": self.valid,
            "findings": [finding.as_dict() for finding in self.findings],
            "effective": self.effective.model_dump(by_alias=True, exclude_none=True) if self.effective else None,
            "plan": self.plan.model_dump(by_alias=True) if self.plan else None,
        }


def _result(
    meta: tuple[str | None, str | None],
    findings: list[Finding],
    effective: EffectiveConfig | None = None,
    plan: MemoryPlan | None = None,
    capacity: CapacityVerdict | None = None,
) -> ValidationResult:
    ordered = sorted(dedupe(findings), key=lambda finding: SEVERITY_ORDER[finding.severity])
    errors = sum(1 for finding in ordered if finding.severity == "error")
    return ValidationResult(meta[0], meta[1], tuple(ordered), effective, plan, capacity, errors)


def _metadata(document: Mapping[Any, Any]) -> tuple[str | None, str | None]:
    metadata = document.get("metadata")
    if not isinstance(metadata, Mapping):
        return None, None
    name, namespace = metadata.get("name"), metadata.get("namespace")
    return (name if isinstance(name, str) else None, namespace if isinstance(namespace, str) else None)


def _enforced(findings: list[Finding], mode: str) -> list[Finding]:
    """Known-issue errors become warnings when the spec asks for it (spec.validation.knownIssues: Warn)."""
    if mode != "Warn":
        return findings
    note = " (admitted: spec.validation.knownIssues is Warn; crash-loop remediation repairs it if it crashes)"
    return [replace(f, severity="warning", message=f.message + note) if f.severity == "error" else f for f in findings]


def _check_context(model: ModelFacts, settings: EngineSettings) -> list[Finding]:
    limit = model.derived_max_model_len()
    if settings.max_model_len_from_spec and settings.max_model_len > limit:
        return [
            Finding(
                "max_model_len_exceeds_model_limit",
                "error",
                MAX_MODEL_LEN,
                f"maxModelLen {tokens(settings.max_model_len)} exceeds the model's maximum {tokens(limit)} "
                "(max_position_embeddings, scaled as vLLM scales it); vLLM refuses to start",
                f"set maxModelLen to at most {tokens(limit)}",
            )
        ]
    return []


def _fewest_gpus_that_fit(model: ModelFacts, gpu: GpuFacts, settings: EngineSettings, knowledge: Knowledge) -> str:
    per_node = gpu.gpus_per_node
    for tp in valid_tensor_parallel_sizes(model, per_node):
        if tp <= settings.tensor_parallel_size:
            continue
        trial = plan_memory(model, gpu, _with_tp(settings, tp), knowledge)
        if trial.max_model_len_that_fits >= min(settings.max_model_len, 8192):
            return f"tensorParallelSize {tp}"
    return "more GPUs (pipelineParallelSize), an FP8 checkpoint or a larger GPU"


def _with_tp(settings: EngineSettings, tp: int) -> EngineSettings:
    return replace(settings, tensor_parallel_size=tp)


def _check_memory(
    plan: MemoryBreakdown, model: ModelFacts, gpu: GpuFacts, settings: EngineSettings, knowledge: Knowledge
) -> list[Finding]:
    where = f"{settings.gpus_per_replica} x {gpu.product} (TP {settings.tensor_parallel_size} x PP "
    where += f"{settings.pipeline_parallel_size}, gpuMemoryUtilization {settings.gpu_memory_utilization:g})"
    budget = (
        f"per GPU: {plan.usable_gib:.1f} GiB usable, weights {plan.weights_gib:.1f} GiB, "
        f"reserve {plan.reserve_gib:.1f} +/- {plan.band_gib:.1f} GiB"
    )
    band = (
        f"the reserve (activations, CUDA graphs, communication buffers) is an estimate within +/- {plan.band_gib:.1f} "
        "GiB per GPU: vLLM measures it at startup"
    )
    if plan.kv_cache_gib_optimistic <= 0 or plan.max_model_len_that_may_fit == 0:
        return [
            Finding(
                "weights_exceed_gpu_memory",
                "error",
                "spec.engine.tensorParallelSize",
                f"{model.name} does not fit on {where}: {budget}, leaving at most "
                f"{plan.kv_cache_gib_optimistic:.1f} GiB for the KV cache",
                f"use {_fewest_gpus_that_fit(model, gpu, settings, knowledge)}",
            )
        ]
    fits, may_fit = plan.max_model_len_that_fits, plan.max_model_len_that_may_fit
    rule = "chunked-local layers hold one chunk" if plan.kv_rule != "FullLength" else "every layer at full length"
    need = (
        f"one sequence of {{source}} {tokens(settings.max_model_len)} tokens needs {plan.sequence_gib:.1f} GiB of KV "
        f"cache per GPU ({rule})"
    )
    source = "maxModelLen" if settings.max_model_len_from_spec else "the model's default maxModelLen"
    suggestion = tokens(fits).replace(",", "")
    if may_fit < settings.max_model_len:
        return [
            Finding(
                "max_model_len_does_not_fit",
                "error",
                MAX_MODEL_LEN,
                f"{need.format(source=source)} but {where} leaves {plan.kv_cache_gib_optimistic:.1f} GiB even at the "
                f"optimistic end of the estimate ({budget}); the largest maxModelLen that fits is {tokens(fits)} "
                f"(at most {tokens(may_fit)} if vLLM's measured reserve is at the low end)",
                f"set spec.engine.maxModelLen to {suggestion} or less, or add GPUs, or use kvCacheDtype fp8",
            )
        ]
    if fits < settings.max_model_len:
        return [
            Finding(
                "max_model_len_may_not_fit",
                "warning",
                MAX_MODEL_LEN,
                f"{need.format(source=source)}; {where} leaves {plan.kv_cache_gib:.1f} to "
                f"{plan.kv_cache_gib_optimistic:.1f} GiB ({budget}), so it fits only if vLLM's measured reserve is "
                f"at the low end: {band}. Certain to fit: {tokens(fits)}",
                f"set spec.engine.maxModelLen to {suggestion} to be sure, or keep it and check the first start "
                "(vLLM refuses to start, naming its own limit, if it does not fit)",
            )
        ]
    return [
        Finding(
            "memory_plan",
            "info",
            MAX_MODEL_LEN,
            f"{budget}, KV cache {plan.kv_cache_gib:.1f} GiB ({rule}): {plan.max_concurrent_sequences:.1f} "
            f"concurrent sequences of {tokens(settings.max_model_len)} tokens; the largest maxModelLen that fits "
            f"is {tokens(fits)} (up to {tokens(may_fit)} if the reserve is at the low end of its estimate)",
            "",
        )
    ]


def _check_engine(model: ModelFacts, settings: EngineSettings, knowledge: Knowledge) -> list[Finding]:
    """Engine settings vLLM's own config refuses, or that the planner cannot size."""
    findings = []
    method = model.quantization.method if model.quantization else None
    version = parse_version(settings.vllm_version)
    refused_from = knowledge.memory.deprecated_quantization_from
    if (
        method in knowledge.memory.deprecated_quantization
        and version is not None
        and refused_from is not None
        and version >= refused_from
        and "--allow-deprecated-quantization" not in settings.extra
    ):
        findings.append(
            Finding(
                "deprecated_quantization_refused",
                "error",
                "spec.engine.extraArgs",
                f"{model.name} is quantized with {method}, which vLLM {settings.vllm_version} lists as deprecated: "
                "it refuses to start ('The quantization method ... is deprecated ... To bypass, set "
                "`--allow-deprecated-quantization`')",
                "add --allow-deprecated-quantization to spec.engine.extraArgs, or use a checkpoint in a supported "
                "format (e.g. compressed-tensors FP8)",
            )
        )
    if settings.hybrid_conflict:
        findings.append(
            Finding(
                "hybrid_kv_cache_manager_unsupported",
                "error",
                "spec.engine.extraArgs",
                "--no-disable-hybrid-kv-cache-manager asks for the hybrid KV-cache manager, which vLLM does not "
                f"support with {settings.hybrid_conflict}; vLLM refuses to start (VllmConfig: 'Hybrid KV cache "
                "manager was explicitly enabled but is not supported in this configuration')",
                "remove --no-disable-hybrid-kv-cache-manager (vLLM then keeps every layer at full length)",
            )
        )
    if settings.speculative_method == "draft_model":
        findings.append(
            Finding(
                "draft_model_not_planned",
                "warning",
                "spec.engine.extraArgs",
                f"the speculative draft model's weights and KV cache are not in the memory plan of {model.name}",
                "leave headroom below the suggested maxModelLen, or use an EAGLE draft (planned)",
            )
        )
    return findings


def _plan(document: Mapping[Any, Any], knowledge: Knowledge) -> ValidationResult:
    meta = _metadata(document)
    if document.get("apiVersion") != API_VERSION or document.get("kind") != KIND:
        got = f"{describe(document.get('apiVersion'))}/{describe(document.get('kind'))}"
        finding = Finding(
            "not_a_llama_deployment",
            "error",
            "apiVersion",
            f"expected apiVersion {API_VERSION} and kind {KIND}, got {got}",
            f"set apiVersion: {API_VERSION} and kind: {KIND}",
        )
        try:
            LlamaDeployment.model_validate(document)
        except ValidationError as error:
            return _result(meta, [finding, *findings_from_validation_error(error)])
        return _result(meta, [finding])
    try:
        resource = LlamaDeployment.model_validate(document)
    except ValidationError as error:
        return _result(meta, findings_from_validation_error(error))
    return _plan_resource(resource, meta, knowledge)


def _plan_resource(
    resource: LlamaDeployment, meta: tuple[str | None, str | None], knowledge: Knowledge
) -> ValidationResult:
    """The spec's checks, then, when it would deploy, whether the cluster's GPU nodes can hold it."""
    result = _check_spec(resource, meta, knowledge)
    if not result.valid:
        return result
    capacity = capacity_of(resource.spec, knowledge)
    findings = [*result.findings, *capacity.findings]
    return _result(meta, findings, result.effective, result.plan, capacity.verdict)


def _check_spec(
    resource: LlamaDeployment, meta: tuple[str | None, str | None], knowledge: Knowledge
) -> ValidationResult:
    spec = resource.spec
    resolved = resolve(spec, knowledge)
    findings = [*resolved.findings, *check_placement(spec, resolved.gpu), *check_extra_args(spec)]
    findings += check_kubernetes_fields(resource.metadata, spec)
    findings += check_autoscaling(spec)
    _, nodes = nodes_per_replica(spec, resolved.gpu)
    model, gpu = resolved.model, resolved.gpu
    if model is None:
        return _result(meta, findings, effective_config(spec, None, None, knowledge, nodes))
    settings = engine_settings(spec, model, gpu, knowledge)
    findings += check_heads(spec, model, nodes_per_replica(spec, gpu)[0], settings.extra)
    findings += _check_engine(model, settings, knowledge)
    findings += _check_context(model, settings)
    findings += _enforced(check_known_issues(model, settings, knowledge), spec.validation.known_issues)
    plan: MemoryPlan | None = None
    if gpu is not None and not any(finding.code.startswith("tp_") for finding in findings):
        breakdown = plan_memory(model, gpu, settings, knowledge)
        findings += _check_memory(breakdown, model, gpu, settings, knowledge)
        plan = breakdown.to_status()
    findings += check_rollout(spec, plan, settings.gpus_per_replica)
    return _result(meta, findings, effective_config(spec, model, settings, knowledge, nodes), plan)


def _internal_error(meta: tuple[str | None, str | None], error: Exception) -> ValidationResult:
    return _result(
        meta,
        [
            Finding(
                "internal_error",
                "error",
                "",
                f"validation failed unexpectedly: {type(error).__name__}: {str(error)[:200]}",
                "report this as a bug of llama-operator, with the manifest",
            )
        ],
    )


def validate_resource(resource: LlamaDeployment, knowledge: Knowledge) -> ValidationResult:
    """Validate a LlamaDeployment already parsed (the operator's spec with remediation's overrides applied): the
    checks of ``validate`` after parsing, with no dump and re-parse of the model. Never raises."""
    meta = (resource.metadata.name, resource.metadata.namespace)
    try:
        return _plan_resource(resource, meta, knowledge)
    except Exception as error:
        return _internal_error(meta, error)


def validate(document: object, knowledge: Knowledge | None = None) -> ValidationResult:
    """Validate one parsed document (a LlamaDeployment as a mapping). Never raises."""
    if not isinstance(document, Mapping):
        kind = type(document).__name__
        return _result(
            (None, None),
            [
                Finding(
                    "not_an_object",
                    "error",
                    "",
                    f"a LlamaDeployment is a mapping (YAML object), got {kind}",
                    f"write a mapping with apiVersion: {API_VERSION}, kind: {KIND}, metadata and spec",
                )
            ],
        )
    deep = check_depth(document)
    if deep:
        # Refused before anything reads it: nothing else about such an object matters (planning.depth).
        return _result(_metadata(document), deep)
    try:
        return _plan(document, knowledge or load_knowledge())
    except Exception as error:
        return _internal_error(_metadata(document), error)
