"""Crash classification: a container's termination (exit code, reason, message) -> a stable signature and the
known issue it shows. Pure and total: any input gives a ``Classification``, never an exception.

Where the message comes from matters. The patched image's crash report (images/vllm/llamaops_vllm/crash.py)
writes one JSON line to the termination-message file; Kubernetes then reports that line as the message. Without
the plugin the message is the tail of the log (terminationMessagePolicy FallbackToLogsOnError: at most 80 lines or
2 KiB, and only on a non-zero exit), which often holds only shutdown chatter: upstream vLLM 0.32 even exits 0
after EngineDeadError, so there is no message at all. Both forms are read here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from llama_operator.api import LlamaDeploymentSpec
from llama_operator.knowledge import Knowledge, KnownIssue, load_knowledge
from llama_operator.knowledge.crash_signatures import report_signatures
from llama_operator.planning.engine import engine_settings
from llama_operator.planning.issues import exposes
from llama_operator.planning.resolve import resolve

Signature = Literal[
    "cuda_device_assert_index_oob",
    "cuda_device_assert_embedding_oov",
    "cuda_device_assert",
    "cuda_oom",
    "illegal_memory_access",
    "nccl_error",
    "kv_cache_insufficient",
    "model_auth_failed",
    "model_download_failed",
    "oom_killed",
    "engine_dead",
    "unknown",
]

# (signature, pattern), most specific first: the first that matches wins. Engine death comes last among the
# text signatures because every fatal error above ends in it.
_PATTERNS: tuple[tuple[Signature, re.Pattern[str]], ...] = (
    # Advanced indexing (IndexKernel.cu), e.g. the block-table gather of vllm#16157.
    ("cuda_device_assert_index_oob", re.compile(r'IndexKernel\.cu:\d+|"index out of bounds"')),
    # index_select (Indexing.cu), which an embedding lookup of an out-of-vocabulary id hits.
    ("cuda_device_assert_embedding_oov", re.compile(r"srcIndex < srcSelectDimSize")),
    (
        "cuda_device_assert",
        re.compile(r"device-side assert triggered|cudaErrorAssert|\.cu:\d+: [^\n]*Assertion `", re.IGNORECASE),
    ),
    (
        "cuda_oom",
        re.compile(r"CUDA out of memory|OutOfMemoryError|cudaErrorMemoryAllocation|CUDA error: out of memory"),
    ),
    ("illegal_memory_access", re.compile(r"illegal memory access|cudaErrorIllegalAddress", re.IGNORECASE)),
    (
        "nccl_error",
        re.compile(
            r"\bNCCL (?:error|WARN)|nccl(?:Internal|System|UnhandledCuda|Remote|InvalidUsage|InvalidArgument)Error"
            r"|ProcessGroupNCCL|DistBackendError"
        ),
    ),
    (
        "kv_cache_insufficient",
        re.compile(
            r"No available memory for the cache blocks|larger than the available KV cache memory"
            r"|larger than the maximum number of tokens that can be stored in KV cache"
        ),
    ),
    (
        "model_auth_failed",
        re.compile(
            r"GatedRepoError|RepositoryNotFoundError|Cannot access gated repo|Access to model \S+ is restricted"
            r"|trying to access a gated repo|\b40[13] Client Error|Invalid (?:user )?token|Invalid credentials"
            r"|is not a valid model identifier|InvalidAccessKeyId|SignatureDoesNotMatch|NoCredentialsError"
            r"|Unable to locate credentials"
        ),
    ),
    (
        "model_download_failed",
        re.compile(
            r"LocalEntryNotFoundError|EntryNotFoundError|RevisionNotFoundError|HfHubHTTPError"
            r"|couldn't connect to 'https://huggingface\.co'|Max retries exceeded with url"
            r"|Temporary failure in name resolution|Consistency check failed|No space left on device"
            r"|NoSuchBucket|NoSuchKey|cannot find the requested files in the (?:local|disk) cache"
        ),
    ),
    (
        "engine_dead",
        re.compile(
            r"EngineDeadError|EngineCore encountered (?:a fatal error|an issue)|Engine core initialization failed"
            r"|Engine core (?:proc \S+ )?died unexpectedly|EngineCore failed to start"
        ),
    ),
)

SIGNATURES: tuple[Signature, ...] = (*(name for name, _ in _PATTERNS), "oom_killed", "unknown")
_OURS: dict[str, Signature] = {name: name for name in SIGNATURES}
# Specificity when two sources disagree (text vs. crash report): lower wins.
_RANK: dict[str, int] = {name: index for index, (name, _) in enumerate(_PATTERNS)}
_RANK["oom_killed"] = len(_PATTERNS) - 1  # above engine_dead: the kernel's verdict is definite
_RANK["engine_dead"] = len(_PATTERNS)
_RANK["unknown"] = len(_PATTERNS) + 1

# The crash report's signatures (images/vllm/llamaops_vllm/crash.py) in this module's terms, from the source the
# plugin's list is generated from (knowledge/data/crash_signatures.yaml); a name that is no Signature fails here,
# at import. Its device-side assert is not split by kernel; its detail line is classified again to split it.
_REPORT_SIGNATURES: dict[str, Signature] = {
    **{signature.name: _OURS[signature.classifier] for signature in report_signatures()},
    "unknown": "unknown",
}

# Termination messages are capped at 4 KiB by the kubelet; logs handed in directly are cut to their tail.
MAX_TEXT = 256 * 1024
DETAIL_CHARS = 300
_MAX_REPORT_LINE = 16 * 1024
# vLLM's log prefix: "(EngineCore pid=12) ERROR 11-23 00:05:21 [core.py:1512] ".
_LOG_PREFIX = re.compile(
    r"^(?:\([\w.-]+ pid=\d+\) )?(?:(?P<level>[A-Z]+) \d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \[[^\]]*\] )?"
)
# An exception logged at these levels was handled; it is not why the process died.
_QUIET_LEVELS = frozenset({"DEBUG", "INFO", "WARNING"})
# The last line of a traceback: "IndexError: ...", "torch.OutOfMemoryError: ...".
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception)(?::|$)")
# Engine death only says that the engine died, never why: it cannot identify a known issue on its own.
_ENGINE_DEATH_SAMPLES = (
    "vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue. See stack trace (above).",
    "EngineCore encountered a fatal error.",
)


@dataclass(frozen=True, slots=True)
class Termination:
    """How a container ended: ``lastState.terminated`` or ``state.terminated`` of a container status."""

    exit_code: int | None = None
    reason: str = ""
    message: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class CrashReport:
    """The patched image's crash-report line, as the plugin wrote it."""

    signature: str
    known_issue: str | None
    vllm_version: str
    plugin_version: str
    detail: str


@dataclass(frozen=True, slots=True)
class CrashContext:
    """What the classifier knows about the deployment: known issues match only where they can occur."""

    vllm_version: str | None = None
    architecture: str | None = None
    # Known-issue ids whose planner condition this deployment meets (None: not checked, every issue may apply).
    exposed_issues: frozenset[str] | None = None


def crash_context(spec: LlamaDeploymentSpec, knowledge: Knowledge | None = None) -> CrashContext:
    """The classifier's view of a deployment: its vLLM version, model architecture and the known issues whose
    planner condition it meets. Pass the effective spec (overrides applied): a remedy that removed an exposure
    also removes the issue from the candidates."""
    knowledge = knowledge or load_knowledge()
    version = spec.engine.vllm_version
    resolved = resolve(spec, knowledge)
    model = resolved.model
    if model is None:
        return CrashContext(vllm_version=version)
    settings = engine_settings(spec, model, resolved.gpu, knowledge)
    exposed = frozenset(issue.id for issue in knowledge.issues if exposes(issue, model, settings))
    return CrashContext(vllm_version=version, architecture=model.architecture, exposed_issues=exposed)


@dataclass(frozen=True, slots=True)
class Classification:
    """A crash, classified: a stable signature, the matched known issue and the line that tells most."""

    signature: Signature
    known_issue: str | None
    detail: str
    report: CrashReport | None = None

    def summary(self) -> str:
        issue = f" ({self.known_issue})" if self.known_issue else ""
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.signature}{issue}{detail}"


def parse_crash_report(message: str) -> CrashReport | None:
    """The plugin's crash-report line in a termination message (the last one when several), or None."""
    for line in reversed(message.splitlines()):
        text = line.strip()
        if not (text.startswith("{") and '"llamaops"' in text and len(text) <= _MAX_REPORT_LINE):
            continue
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            continue
        if not isinstance(data, dict) or data.get("llamaops") != "crash":
            continue
        known = data.get("known_issue")
        return CrashReport(
            signature=_text(data.get("signature")) or "unknown",
            known_issue=known if isinstance(known, str) and known else None,
            vllm_version=_text(data.get("vllm_version")),
            plugin_version=_text(data.get("plugin_version")),
            detail=_text(data.get("detail"))[:DETAIL_CHARS],
        )
    return None


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def signature_of_text(text: str) -> Signature:
    """The most specific signature a crash output shows, or unknown."""
    return next((name for name, pattern in _PATTERNS if pattern.search(text)), "unknown")


def telling_line(text: str) -> str:
    """The line that says most about a crash: the first failed device assertion, else the first exception line
    (the root cause of a chain of tracebacks) not logged as a mere warning, else the last non-empty line."""
    lines: list[tuple[str, str]] = []
    for raw in text.splitlines():
        stripped = raw.strip()
        prefix = _LOG_PREFIX.match(stripped)  # every part is optional: it always matches
        level = (prefix["level"] or "") if prefix else ""
        line = stripped[prefix.end() if prefix else 0 :].strip()
        if line:
            lines.append((level, line))
    for _, line in lines:
        if "Assertion `" in line:
            return line[:DETAIL_CHARS]
    for level, line in lines:
        if level not in _QUIET_LEVELS and _EXCEPTION_LINE.match(line):
            return line[:DETAIL_CHARS]
    return lines[-1][1][:DETAIL_CHARS] if lines else ""


def _generic(pattern: re.Pattern[str]) -> bool:
    return any(pattern.search(sample) for sample in _ENGINE_DEATH_SAMPLES)


def _applies(issue: KnownIssue, context: CrashContext) -> bool:
    if context.vllm_version is not None and not issue.affects_version(context.vllm_version):
        return False
    if context.architecture is not None and not issue.affects_architecture(context.architecture):
        return False
    return context.exposed_issues is None or issue.id in context.exposed_issues


def match_known_issue(text: str, context: CrashContext, issues: Iterable[KnownIssue]) -> str | None:
    """The known issue whose symptoms the crash output shows, among those that can occur in this deployment.

    An issue needs one specific symptom (engine death alone names no cause). When several match, the one whose
    symptom is on the telling line wins, then the one with more matching symptoms, then registry order."""
    detail = telling_line(text)
    best: tuple[bool, int] | None = None
    chosen: str | None = None
    for issue in issues:
        if not _applies(issue, context):
            continue
        matched = [pattern for pattern in issue.symptoms if pattern.search(text)]
        if not any(not _generic(pattern) for pattern in matched):
            continue
        score = (any(pattern.search(detail) for pattern in matched), len(matched))
        if best is None or score > best:
            best, chosen = score, issue.id
    return chosen


def classify(
    termination: Termination, context: CrashContext | None = None, knowledge: Knowledge | None = None
) -> Classification:
    """Classify one termination. Never raises."""
    context = context or CrashContext()
    knowledge = knowledge or load_knowledge()
    message = termination.message[-MAX_TEXT:] if termination.message else ""
    report = parse_crash_report(message)
    text = message
    if report is not None:
        # The report line is JSON; classify its detail and whatever else the message holds as plain text.
        text = "\n".join([report.detail, *(line for line in message.splitlines() if '"llamaops"' not in line)])
    signature = signature_of_text(text)
    if report is not None:
        from_report = _REPORT_SIGNATURES.get(report.signature) or _OURS.get(report.signature)
        if from_report is not None and _RANK[from_report] < _RANK[signature]:
            signature = from_report
    # The kernel killed it for memory (exit 137 is SIGKILL); only a CUDA or NCCL signature says more than that.
    if termination.reason == "OOMKilled" or (termination.exit_code == 137 and signature in ("engine_dead", "unknown")):
        signature = "oom_killed"
    known: str | None = None
    if report is not None and report.known_issue and knowledge.issue(report.known_issue) is not None:
        known = report.known_issue  # the plugin matched it inside the crashing process
    if known is None and text:
        known = match_known_issue(text, context, knowledge.issues)
    detail = report.detail if report is not None and report.detail else telling_line(text)
    return Classification(signature=signature, known_issue=known, detail=detail, report=report)
