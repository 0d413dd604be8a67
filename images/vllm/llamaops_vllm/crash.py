"""Classify a fatal error's text into the line the operator reads from the termination message. Pure."""

import json
import re
from dataclasses import dataclass

from llamaops_vllm import facts
from llamaops_vllm.registry import version_matches

# (signature, pattern), first match wins: the specific CUDA failures before the generic engine death. The names and
# the order are the operator's (facts.json, generated from its crash_signatures.yaml).
SIGNATURES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern, re.I if ignore_case else 0)) for name, pattern, ignore_case in facts.SIGNATURES
)

# (known issue id, vLLM specifier set or "" for any, pattern), from the operator's known-issue registry
# (facts.json, generated from operator/llama_operator/knowledge/data/known_issues.yaml).
KNOWN_ISSUES: tuple[tuple[str, str, re.Pattern[str]], ...] = tuple(
    (issue_id, versions, re.compile(pattern)) for issue_id, versions, pattern in facts.KNOWN_ISSUES
)

# Kubernetes keeps at most 4096 bytes of a termination message; the line stays well inside.
DETAIL_CHARS = 300


@dataclass(frozen=True)
class CrashReport:
    signature: str
    known_issue: str | None
    vllm_version: str
    plugin_version: str
    detail: str

    def line(self) -> str:
        return json.dumps(
            {
                "llamaops": "crash",
                "signature": self.signature,
                "known_issue": self.known_issue,
                "vllm_version": self.vllm_version,
                "plugin_version": self.plugin_version,
                "detail": self.detail,
            },
            separators=(",", ":"),
        )

    def rank(self) -> int:
        """How specific the report is: a CUDA/NCCL signature over engine death over unknown, then a known issue."""
        base = {"unknown": 0, "engine_dead": 1}.get(self.signature, 2)
        return base * 2 + (self.known_issue is not None)


def classify(text: str, vllm_version: str, plugin_version: str) -> CrashReport:
    signature = next((name for name, pattern in SIGNATURES if pattern.search(text)), "unknown")
    known = next(
        (
            name
            for name, versions, pattern in KNOWN_ISSUES
            if pattern.search(text) and (not versions or version_matches(versions, vllm_version))
        ),
        None,
    )
    return CrashReport(signature, known, vllm_version, plugin_version, _detail(text))


def _detail(text: str) -> str:
    # The most telling single line: the first device assert or exception line.
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if "Assertion `" in ln or re.search(r"\b[\w.]+(Error|Exception): ", ln):
            return ln[:DETAIL_CHARS]
    return (lines[-1] if lines else "")[:DETAIL_CHARS]


def rank_of_line(line: str) -> int:
    """Rank of a line already in the termination file; -1 when none or not ours."""
    try:
        data = json.loads(line)
    except ValueError:
        return -1
    if not isinstance(data, dict) or data.get("llamaops") != "crash":
        return -1
    return CrashReport(str(data.get("signature")), data.get("known_issue"), "", "", "").rank()


def should_write(existing: str, new: CrashReport) -> bool:
    """Several processes (API server, engine core, workers) report the same death; keep the most specific."""
    return new.rank() > rank_of_line(existing.strip())
