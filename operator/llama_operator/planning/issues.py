"""Known vLLM issues a spec would hit: the registry's `condition` names map to the predicates here.

A predicate returns None when the spec is clear of the hazard, else the sentence that says how it is exposed
(with the numbers: the danger window, the capture size, ...).
"""

from __future__ import annotations

from collections.abc import Callable

from llama_operator.knowledge import Knowledge, KnownIssue, ModelFacts
from llama_operator.planning.engine import EngineSettings
from llama_operator.planning.findings import Finding, tokens

Predicate = Callable[[KnownIssue, ModelFacts, EngineSettings], str | None]

MAX_MODEL_LEN = "spec.engine.maxModelLen"


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


PREDICATES: dict[str, Predicate] = {
    "max_model_len_not_multiple_of_attention_chunk": _chunk_overrun,
    "always": _always,
    "flashinfer_with_chunked_attention": _flashinfer_chunked,
    "max_model_len_below_cudagraph_capture": _cudagraph_capture,
}

_FIELDS: dict[str, str] = {
    "max_model_len_not_multiple_of_attention_chunk": MAX_MODEL_LEN,
    "always": "spec.engine.patched",
    "flashinfer_with_chunked_attention": "spec.engine.maxNumSeqs",
    "max_model_len_below_cudagraph_capture": MAX_MODEL_LEN,
}


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
