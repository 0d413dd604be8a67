"""The facts the patched image's plugin shares with the operator, as the JSON file the plugin reads
(images/vllm/llamaops_vllm/facts.json). The plugin cannot import the operator and the operator must not import the
plugin, so the file is generated from the operator's data (`llama-operator plugin-facts --write`) and a unit test
fails when it drifts."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet

from llama_operator.knowledge.catalog import _read
from llama_operator.knowledge.crash_signatures import report_signatures_from

FACTS_FILE = "facts.json"
SOURCES = (
    "operator/llama_operator/knowledge/data/known_issues.yaml",
    "operator/llama_operator/knowledge/data/crash_signatures.yaml",
)


def _spec(issue_id: str, field: str, value: Any) -> str:
    text = str(value or "")
    try:
        SpecifierSet(text)
    except InvalidSpecifier as error:
        raise ValueError(f"known issue {issue_id!r}: bad {field}: {error}") from error
    return text


def _known_issues(entries: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    facts: list[dict[str, str]] = []
    for entry in entries:
        issue_id, pattern = str(entry["id"]), str(entry.get("report_pattern") or "")
        if not pattern:
            continue
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValueError(f"known issue {issue_id!r}: report_pattern is not a regular expression: {error}") from None
        # The plugin names an issue only within its affected range ("" = any version).
        versions = _spec(issue_id, "affected", entry.get("affected"))
        facts.append({"id": issue_id, "vllm_versions": versions, "pattern": pattern})
    return facts


def _patches(entries: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    patches: dict[str, dict[str, str]] = {}
    for entry in entries:
        issue_id, patch = str(entry["id"]), str(entry.get("patch") or "")
        versions = _spec(issue_id, "patched_versions", entry.get("patched_versions"))
        if bool(patch) != bool(versions):
            raise ValueError(f"known issue {issue_id!r}: patch and patched_versions go together")
        if patch in patches:
            raise ValueError(f"known issue {issue_id!r}: patch {patch!r} already removes {patches[patch]['issue']}")
        if patch:
            patches[patch] = {"issue": issue_id, "vllm_versions": versions}
    return patches


def plugin_facts(known_issues: Mapping[str, Any], crash_signatures: Mapping[str, Any]) -> dict[str, Any]:
    """The file's content from the two parsed YAML documents."""
    entries = known_issues["issues"]
    return {
        "generated_from": list(SOURCES),
        "how": "llama-operator plugin-facts --write; never edit by hand",
        "signatures": [
            {"name": s.name, "pattern": s.pattern, "ignore_case": s.ignore_case}
            for s in report_signatures_from(crash_signatures)
        ],
        "known_issues": _known_issues(entries),
        "patches": _patches(entries),
    }


def plugin_facts_json() -> str:
    facts = plugin_facts(_read("known_issues.yaml"), _read("crash_signatures.yaml"))
    return json.dumps(facts, indent=2, ensure_ascii=False) + "\n"
