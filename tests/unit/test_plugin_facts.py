"""One source for what the patched image's plugin and the operator both know: the plugin's facts.json is generated
from the operator's data (known_issues.yaml, crash_signatures.yaml) and current, the classifier's table of report
signatures comes from the same source, and the plugin's code restates none of it."""

from __future__ import annotations

import copy
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from llama_operator.cli import main
from llama_operator.health.classify import _REPORT_SIGNATURES, SIGNATURES
from llama_operator.knowledge import load_knowledge
from llama_operator.knowledge.catalog import _read
from llama_operator.knowledge.crash_signatures import report_signatures, report_signatures_from
from llama_operator.knowledge.plugin_facts import FACTS_FILE, plugin_facts, plugin_facts_json
from tests.unit.test_classify_registry import FIXTURES, text_of

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "images" / "vllm"
FACTS_PATH = PLUGIN / "llamaops_vllm" / FACTS_FILE
KNOWLEDGE = load_knowledge()


def shipped() -> dict[str, Any]:
    facts: dict[str, Any] = json.loads(FACTS_PATH.read_text(encoding="utf-8"))
    return facts


def plugin_source(name: str) -> str:
    return (PLUGIN / "llamaops_vllm" / name).read_text(encoding="utf-8")


def test_the_plugin_facts_file_matches_the_sources() -> None:
    assert FACTS_PATH.read_text(encoding="utf-8") == plugin_facts_json(), (
        "images/vllm/llamaops_vllm/facts.json drifted: run `llama-operator plugin-facts --write`"
    )


def test_plugin_facts_command_writes_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / FACTS_FILE
    assert main(["plugin-facts", "--check", "--dir", str(tmp_path)]) == 1  # nothing written yet
    assert main(["plugin-facts", "--write", "--dir", str(tmp_path)]) == 0
    assert target.read_text(encoding="utf-8") == FACTS_PATH.read_text(encoding="utf-8")
    target.write_text(plugin_facts_json().replace('"==0.8.3"', '"==0.8.4"'), encoding="utf-8")
    assert main(["plugin-facts", "--check", "--dir", str(tmp_path)]) == 1
    assert "run `llama-operator plugin-facts --write`" in capsys.readouterr().err


def test_the_classifier_reads_every_signature_the_plugin_writes() -> None:
    names = {signature["name"] for signature in shipped()["signatures"]}
    assert set(_REPORT_SIGNATURES) == names | {"unknown"}
    assert {signature.classifier for signature in report_signatures()} <= set(SIGNATURES)
    # crash.py ranks engine death below the CUDA and NCCL signatures by this name.
    assert "engine_dead" in names


def test_shipped_issue_ids_and_patched_ranges_are_the_registry_s() -> None:
    facts = shipped()
    for reported in facts["known_issues"]:
        issue = KNOWLEDGE.issue(reported["id"])
        assert issue is not None, reported["id"]
        assert reported["vllm_versions"] == str(issue.affected)
    patched = {issue.id: str(issue.patched_versions) for issue in KNOWLEDGE.issues if issue.patched_versions}
    assert {p["issue"]: p["vllm_versions"] for p in facts["patches"].values()} == patched


def test_every_report_pattern_is_shown_by_upstream_text_of_its_entry_only() -> None:
    # As the registry's symptoms are (tests/unit/test_classify_registry.py): the plugin's narrower patterns too.
    for reported in shipped()["known_issues"]:
        pattern = re.compile(reported["pattern"])
        shown = {fixture["issue"] for fixture in FIXTURES if pattern.search(text_of(fixture))}
        assert shown == {reported["id"]}, (reported["id"], shown)


def test_the_plugin_code_restates_no_shared_fact() -> None:
    facts = shipped()
    code = "\n".join(p.read_text(encoding="utf-8") for p in (PLUGIN / "llamaops_vllm").rglob("*.py"))
    for issue in KNOWLEDGE.issues:
        assert issue.id not in code, f"the plugin names {issue.id} in its code: read it from facts.json"
    for item in (*facts["signatures"], *facts["known_issues"]):
        assert item["pattern"] not in code
    registry = plugin_source("registry.py")
    for name, patch in facts["patches"].items():
        # The patch exists under the name the registry gives it, and its range is not typed again.
        assert f'name="{name}"' in registry, name
        assert f'PATCHED_VERSIONS["{name}"]' in registry, name
        assert f'"{patch["vllm_versions"]}"' not in registry, name


def test_the_plugin_package_installs_the_facts_file() -> None:
    # setuptools leaves non-Python files out of the wheel unless they are package data; the Dockerfile copies the
    # whole package folder and .dockerignore keeps it.
    pyproject = tomllib.loads((PLUGIN / "pyproject.toml").read_text(encoding="utf-8"))
    assert FACTS_FILE in pyproject["tool"]["setuptools"]["package-data"]["llamaops_vllm"]
    assert "!llamaops_vllm/" in (PLUGIN / ".dockerignore").read_text(encoding="utf-8").splitlines()


def known_issues_with(issue_id: str, **change: Any) -> dict[str, Any]:
    document = copy.deepcopy(_read("known_issues.yaml"))
    entry = next(item for item in document["issues"] if item["id"] == issue_id)
    entry.update(change)
    return document


@pytest.mark.parametrize(
    ("issue_id", "change", "message"),
    [
        ("out_of_vocab_token_ids", {"patch": ""}, "patch and patched_versions go together"),
        ("kv_cache_no_memory", {"patch": "token_guard", "patched_versions": ">=0.9"}, "already removes"),
        ("kv_cache_no_memory", {"report_pattern": "("}, "report_pattern is not a regular expression"),
        ("kv_cache_no_memory", {"patch": "x", "patched_versions": "=>1"}, "bad patched_versions"),
    ],
)
def test_the_generator_refuses_inconsistent_entries(issue_id: str, change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        plugin_facts(known_issues_with(issue_id, **change), _read("crash_signatures.yaml"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "engine_dead"}, "names must be unique"),
        ({"name": "unknown"}, "not 'unknown'"),
        ({"name": "Engine-Dead"}, "snake_case"),
        ({"pattern": "("}, "not a regular expression"),
        ({"ignore_case": "yes"}, "ignore_case must be true or false"),
    ],
)
def test_malformed_crash_signatures_are_refused(change: dict[str, Any], message: str) -> None:
    document = copy.deepcopy(_read("crash_signatures.yaml"))
    document["signatures"][0].update(change)
    with pytest.raises(ValueError, match=re.escape(message)):
        report_signatures_from(document)
