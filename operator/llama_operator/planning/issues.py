"""Known vLLM issues a spec would hit: the registry's `condition` names map to the predicates here.

A predicate returns None when the spec is clear of the hazard, else the sentence that says how it is exposed
(with the numbers: the danger window, the capture size, ...).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

from llama_operator.knowledge import Knowledge, KnownIssue, ModelFacts
from llama_operator.knowledge.issues import parse_version
from llama_operator.planning.engine import EXTRA_ARGS, EngineSettings
from llama_operator.planning.findings import Finding, tokens

Predicate = Callable[[KnownIssue, ModelFacts, EngineSettings], str | None]

MAX_MODEL_LEN = "spec.engine.maxModelLen"
# The condition of a crash class no spec field predicts: never a finding at admission, always a candidate for the
# crash classifier.
CRASH_ONLY = "crash_only"
# vLLM's SpeculativeConfig.__post_init__ (0.10-0.14) names the method from the draft "model" when none is given:
# "eagle-" in the name is EAGLE, "eagle3" EAGLE-3; Medusa, MLP speculators and MTP heads it tells by their config,
# which admission cannot read, so names hinting at them stay undecided; anything else is a draft model.
_UNDECIDED_DRAFT_NAMES = ("medusa", "speculator", "mtp")
# Draft names that are certainly plain language models (Meta's own checkpoints): only these make an inferred
# draft_model certain enough to refuse.
_PLAIN_MODEL_PREFIXES = ("meta-llama/",)
_OFF = frozenset({"false", "0", "no", "off"})


def _chunk_overrun(issue: KnownIssue, model: ModelFacts, settings: EngineSettings) -> str | None:
    chunk = model.attention_chunk_size
    length = settings.max_model_len
    if not chunk or length % chunk == 0:
        return None
    if length < chunk:
        window = f"every request (maxModelLen {tokens(length)} is below one {tokens(chunk)}-token attention chunk)"
    else:
        span = length % chunk
        window = (
            f"every request whose length falls in the last {tokens(span)} tokens "
            f"({tokens(length - span + 1)}..{tokens(length)}; maxModelLen mod {tokens(chunk)} = {tokens(span)})"
        )
    return (
        f"maxModelLen {tokens(length)} is not a multiple of attention_chunk_size {tokens(chunk)}: on vLLM "
        f"{settings.vllm_version} {window} reads past the KV block table and the engine dies with 'CUDA error: "
        "device-side assert triggered'"
    )


def _always(issue: KnownIssue, model: ModelFacts, settings: EngineSettings) -> str | None:
    exposure = "any client can send token ids >= vocab_size"
    if "--skip-tokenizer-init" in settings.extra:
        exposure = "--skip-tokenizer-init is set, so prompt token ids reach the model unchecked"
    return f"{exposure} ({tokens(model.vocab_size)}); one such request kills the engine"


def _flashinfer_chunked(issue: KnownIssue, model: ModelFacts, settings: EngineSettings) -> str | None:
    if not model.has_chunked_attention or settings.attention_backend != "FLASHINFER":
        return None
    small = int(issue.params.get("small_max_num_seqs", 64))
    likely = (
        f"maxNumSeqs {settings.max_num_seqs} makes it likely"
        if settings.max_num_seqs < small
        else "a full batch with one chunk-crossing prefill can trigger it"
    )
    return (
        f"the attention backend is FlashInfer (the default on this GPU, or chosen in extraArgs) with chunked "
        f"local attention: prefills longer than {tokens(model.attention_chunk_size or 0)} tokens overflow its "
        f"metadata buffers; {likely}"
    )


def _cudagraph_capture(issue: KnownIssue, model: ModelFacts, settings: EngineSettings) -> str | None:
    if settings.enforce_eager:
        return None
    ceiling = min(settings.cudagraph_capture_ceiling, int(issue.params.get("max_capture_size", 512)))
    if settings.max_model_len >= ceiling:
        return None
    return (
        f"maxModelLen {tokens(settings.max_model_len)} is below the largest CUDA-graph capture size {ceiling} "
        f"(min(2 x maxNumSeqs {settings.max_num_seqs}, 512)): FULL-graph dummy runs read past the block table"
    )


def _crash_only(issue: KnownIssue, model: ModelFacts, settings: EngineSettings) -> str | None:
    return None


def flag(extra: Mapping[str, str], name: str) -> str | None:
    """The value of ``--some-flag`` in extraArgs, also when written ``--some_flag`` (vLLM's parser takes both)."""
    value = extra.get(name)
    return value if value is not None else extra.get("--" + name[2:].replace("-", "_"))


def _switched_on(extra: Mapping[str, str], name: str) -> bool:
    value = flag(extra, name)
    return value is not None and value.strip().lower() not in _OFF


def _lora(issue: KnownIssue, model: ModelFacts, settings: EngineSettings) -> str | None:
    if not _switched_on(settings.extra, "--enable-lora"):
        return None
    return (
        f"--enable-lora is set in extraArgs, and {model.architecture} does not implement LoRA in vLLM "
        f"{settings.vllm_version}: the engine stops while loading the model"
    )


def _pipeline(issue: KnownIssue, model: ModelFacts, settings: EngineSettings) -> str | None:
    if settings.pipeline_parallel_size <= 1:
        return None
    return (
        f"pipelineParallelSize {settings.pipeline_parallel_size}: {model.architecture} does not implement pipeline "
        f"parallelism (SupportsPP) in vLLM {settings.vllm_version}; the engine stops while building the model"
    )


def speculative_method(extra: Mapping[str, str]) -> tuple[str | None, str, bool]:
    """(method, draft model, whether the method was written) of ``--speculative-config``; an unwritten method is
    inferred from the draft model's name as vLLM does, or None where the name cannot tell."""
    text = flag(extra, "--speculative-config")
    try:
        config = json.loads(text) if text else None
    except ValueError:
        return None, "", False
    if not isinstance(config, dict):
        return None, "", False
    model = config.get("model")
    draft = model if isinstance(model, str) else ""
    method = config.get("method")
    if isinstance(method, str) and method:
        return method.lower(), draft, True
    name = draft.lower()
    if not name:
        return None, draft, False
    if "eagle-" in name:
        return "eagle", draft, False
    if "eagle3" in name:
        return "eagle3", draft, False
    if any(hint in name for hint in _UNDECIDED_DRAFT_NAMES):
        return None, draft, False
    return "draft_model", draft, False


def _speculative(issue: KnownIssue, model: ModelFacts, settings: EngineSettings) -> str | None:
    method, draft, written = speculative_method(settings.extra)
    if method is None or method not in {str(m) for m in issue.params.get("methods", ())}:
        return None
    if method == "draft_model" and not written and not draft.lower().startswith(_PLAIN_MODEL_PREFIXES):
        return None  # vLLM may still find a Medusa/MTP/speculator config behind the name: never refuse what works
    how = f'"method": "{method}"' if written else f"a draft model vLLM treats as {method} ({draft})"
    return f"--speculative-config in extraArgs asks for {how} with {model.architecture} on vLLM {settings.vllm_version}"


def _tool_parser(issue: KnownIssue, model: ModelFacts, settings: EngineSettings) -> str | None:
    parser = (flag(settings.extra, "--tool-call-parser") or "").strip()
    first = issue.params.get("first_release", {}).get(parser)
    if first is None or not _switched_on(settings.extra, "--enable-auto-tool-choice"):
        return None
    version, first_version = parse_version(settings.vllm_version), parse_version(str(first))
    if version is None or first_version is None or version >= first_version:
        return None
    return (
        f"--tool-call-parser {parser} is registered from vLLM {first} on; vLLM {settings.vllm_version} does not have "
        "it, and with --enable-auto-tool-choice the server exits at startup"
    )


def _limit_mm_key_value(issue: KnownIssue, model: ModelFacts, settings: EngineSettings) -> str | None:
    value = (flag(settings.extra, "--limit-mm-per-prompt") or "").strip()
    if not value or value.startswith("{"):
        return None
    return (
        f"--limit-mm-per-prompt {value} is key=value; vLLM {settings.vllm_version} parses only a JSON object there "
        "and exits before it starts"
    )


PREDICATES: dict[str, Predicate] = {
    "max_model_len_not_multiple_of_attention_chunk": _chunk_overrun,
    "always": _always,
    "flashinfer_with_chunked_attention": _flashinfer_chunked,
    "max_model_len_below_cudagraph_capture": _cudagraph_capture,
    CRASH_ONLY: _crash_only,
    "lora_enabled": _lora,
    "pipeline_parallel": _pipeline,
    "speculative_method": _speculative,
    "tool_call_parser_missing": _tool_parser,
    "limit_mm_per_prompt_key_value": _limit_mm_key_value,
}

_FIELDS: dict[str, str] = {
    "max_model_len_not_multiple_of_attention_chunk": MAX_MODEL_LEN,
    "always": "spec.engine.patched",
    "flashinfer_with_chunked_attention": "spec.engine.maxNumSeqs",
    "max_model_len_below_cudagraph_capture": MAX_MODEL_LEN,
    "lora_enabled": EXTRA_ARGS,
    "pipeline_parallel": "spec.engine.pipelineParallelSize",
    "speculative_method": EXTRA_ARGS,
    "tool_call_parser_missing": EXTRA_ARGS,
    "limit_mm_per_prompt_key_value": EXTRA_ARGS,
}


def exposes(issue: KnownIssue, model: ModelFacts, settings: EngineSettings) -> bool:
    """Whether a deployment can show this issue's crash (for the classifier): its condition holds, the issue is
    crash-only, or its condition is unknown here. Version and architecture are checked by the caller."""
    if issue.condition == CRASH_ONLY:
        return True
    predicate = PREDICATES.get(issue.condition)
    return predicate is None or predicate(issue, model, settings) is not None


def reference(url: str) -> str:
    """https://github.com/vllm-project/vllm/pull/16209 -> vllm#16209."""
    parts = url.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-1].isdigit() and "github.com" in url:
        return f"{parts[-3]}#{parts[-1]}"
    return url


def _finding(issue: KnownIssue, exposure: str, settings: EngineSettings) -> Finding:
    refs = ", ".join(reference(url) for url in issue.issue_links)
    fixes = ", ".join(reference(url) for url in issue.fix_links)
    source = f" ({refs}{'; fix: ' + fixes if fixes else ''})"
    fix = "; or ".join(issue.remedies)
    if settings.patched and issue.patched_in(settings.vllm_version):
        return Finding(
            issue.id,
            "info",
            _FIELDS.get(issue.condition, "spec.engine"),
            f"{issue.title}{source}: {exposure}. The patched image's plugin removes this hazard.",
            "",
        )
    if settings.patched and issue.patched_versions is not None:
        others = [remedy for remedy in issue.remedies if not remedy.startswith("use the patched image")]
        fix = "; or ".join([f"run a vLLM version whose patched image guards it ({issue.patched_versions})", *others])
    return Finding(
        issue.id,
        "error" if issue.severity == "error" else "warning" if issue.severity == "warning" else "info",
        _FIELDS.get(issue.condition, "spec.engine"),
        f"{issue.title}{source}: {exposure}",
        fix,
    )


def check_known_issues(model: ModelFacts, settings: EngineSettings, knowledge: Knowledge) -> list[Finding]:
    """Every known issue whose version range, architecture and condition match."""
    findings: list[Finding] = []
    for issue in knowledge.issues:
        if not issue.affects_architecture(model.architecture) or not issue.affects_version(settings.vllm_version):
            continue
        predicate = PREDICATES.get(issue.condition)
        exposure = predicate(issue, model, settings) if predicate else None
        if exposure is not None:
            findings.append(_finding(issue, exposure, settings))
    return findings
