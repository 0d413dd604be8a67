"""The image and vLLM server arguments a replica runs with, and extraArgs that would contradict the spec."""

from __future__ import annotations

from llama_operator.api import EffectiveConfig, LlamaDeploymentSpec
from llama_operator.knowledge import Knowledge, ModelFacts
from llama_operator.planning.engine import SPEC_FLAGS, EngineSettings, extra_arg_flags
from llama_operator.planning.findings import Finding

# Where the render layer mounts pvc:// and s3:// weights; vLLM's --model then points inside it.
MODEL_MOUNT = "/models"
# vLLM flags whose value is a credential: in extraArgs it would be copied into status.effective.args, the pod spec
# and anything that prints them. The token goes in a Secret, referenced by spec.model.tokenSecretRef.
SECRET_FLAGS = ("--hf-token",)
REDACTED = "<redacted>"


def image(spec: LlamaDeploymentSpec, knowledge: Knowledge) -> str:
    if spec.engine.image:
        return spec.engine.image
    template = knowledge.defaults.patched_image if spec.engine.patched else knowledge.defaults.upstream_image
    return template.format(version=spec.engine.vllm_version)


def model_argument(spec: LlamaDeploymentSpec, model: ModelFacts | None) -> str:
    """What vLLM's --model gets: a Hugging Face id, or the mounted path of pvc:// / s3:// weights."""
    source = spec.model.source
    if source and source.startswith("hf://"):
        return source.removeprefix("hf://")
    if source:
        scheme, _, rest = source.partition("://")
        return f"{MODEL_MOUNT}/{rest.partition('/')[2] if scheme == 'pvc' else rest}".rstrip("/")
    if model is not None and model.hf_ids and "/" not in spec.model.name:
        return model.hf_ids[0]
    return spec.model.name


def vllm_args(spec: LlamaDeploymentSpec, model: ModelFacts | None, settings: EngineSettings | None) -> list[str]:
    engine = spec.engine
    args = ["--model", model_argument(spec, model), "--served-model-name", spec.model.name]
    if spec.model.revision:
        args += ["--revision", spec.model.revision]
    args += ["--tensor-parallel-size", str(engine.tensor_parallel_size)]
    if engine.pipeline_parallel_size > 1:
        args += ["--pipeline-parallel-size", str(engine.pipeline_parallel_size)]
    max_len = settings.max_model_len if settings else engine.max_model_len
    if max_len:
        args += ["--max-model-len", str(max_len)]
    args += ["--gpu-memory-utilization", f"{engine.gpu_memory_utilization:g}"]
    if engine.max_num_seqs:
        args += ["--max-num-seqs", str(engine.max_num_seqs)]
    if engine.kv_cache_dtype != "auto":
        args += ["--kv-cache-dtype", engine.kv_cache_dtype]
    if engine.quantization:
        args += ["--quantization", engine.quantization]
    return args + redacted(engine.extra_args)


def redacted(extra_args: list[str]) -> list[str]:
    """extraArgs with the values of SECRET_FLAGS replaced: such a spec is refused (secret_in_extra_args), but its
    effective args still reach status."""
    out: list[str] = []
    hide_next = False
    for arg in extra_args:
        name, sep, _ = arg.partition("=")
        if hide_next and not arg.startswith("-"):
            out.append(REDACTED)
        elif name in SECRET_FLAGS and sep:
            out.append(f"{name}={REDACTED}")
        else:
            out.append(arg)
        hide_next = name in SECRET_FLAGS and not sep
    return out


def effective_config(
    spec: LlamaDeploymentSpec,
    model: ModelFacts | None,
    settings: EngineSettings | None,
    knowledge: Knowledge,
    nodes_per_replica: int,
) -> EffectiveConfig:
    engine = spec.engine
    return EffectiveConfig(
        image=image(spec, knowledge),
        args=vllm_args(spec, model, settings),
        tensor_parallel_size=engine.tensor_parallel_size,
        pipeline_parallel_size=engine.pipeline_parallel_size,
        gpus_per_replica=engine.tensor_parallel_size * engine.pipeline_parallel_size,
        nodes_per_replica=nodes_per_replica,
        max_model_len=settings.max_model_len if settings else engine.max_model_len,
    )


def check_extra_args(spec: LlamaDeploymentSpec) -> list[Finding]:
    findings: list[Finding] = []
    for field, name in extra_arg_flags(spec):
        if name in SECRET_FLAGS:
            findings.append(
                Finding(
                    "secret_in_extra_args",
                    "error",
                    field,
                    f"{name} puts the Hugging Face token in the LlamaDeployment itself, and from there in its "
                    "status and the pod spec, readable by anyone who can read those",
                    f"remove {name} and its value from extraArgs; keep the token in a Secret and set "
                    "spec.model.tokenSecretRef (the pod gets it as HF_TOKEN from the Secret)",
                )
            )
            continue
        owner = SPEC_FLAGS.get(name)
        if owner is not None:
            findings.append(
                Finding(
                    "extra_arg_conflicts_with_spec",
                    "error",
                    field,
                    f"{name} is set by the operator from {owner}; in extraArgs it would contradict the spec",
                    f"remove {name} from extraArgs and set {owner} instead"
                    if owner.startswith("spec.")
                    else f"remove {name} from extraArgs",
                )
            )
    return findings
