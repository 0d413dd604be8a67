"""`llama-operator validate FILE|DIR|-`: check LlamaDeployment manifests offline, as CI would.

Exit status: 0 when every LlamaDeployment is valid, 1 when any has an error finding, 2 when an input cannot be
read or parsed (that wins over 1). Documents of other kinds (a Namespace next to the deployment) are skipped.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import shutil
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llama_operator.api import GROUP, KIND
from llama_operator.cli import documents
from llama_operator.knowledge import load_knowledge
from llama_operator.planning import ValidationResult, validate

SUFFIXES = (".yaml", ".yml", ".json")


@dataclass
class Report:
    """Everything one run saw, in input order."""

    results: list[tuple[str, ValidationResult]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    unreadable: list[dict[str, str]] = field(default_factory=list)

    @property
    def status(self) -> int:
        if self.unreadable:
            return 2
        return 1 if any(not result.valid for _, result in self.results) else 0


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "validate",
        help="check LlamaDeployment manifests offline",
        description=(
            "Validate LlamaDeployment manifests (multi-document YAML or JSON) without a cluster: schema, "
            "parallelism against the model's heads, context length, known vLLM crashes for the version, and the "
            "per-GPU memory plan. A DIR is searched recursively for *.yaml, *.yml and *.json; - reads stdin. "
            "Exit 0: all valid; 1: an error finding; 2: unreadable input."
        ),
    )
    parser.add_argument("paths", nargs="+", metavar="FILE|DIR|-", help="manifests to check")
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table", help="output format")
    parser.add_argument("-q", "--quiet", action="store_true", help="table: leave out info findings")
    parser.set_defaults(func=execute)


def _files(path: Path) -> Iterator[Path]:
    if path.is_dir():
        yield from sorted(child for child in path.rglob("*") if child.is_file() and child.suffix in SUFFIXES)
    else:
        yield path


def _documents(items: list[Any]) -> Iterator[tuple[int, Any]]:
    for index, document in enumerate(items, start=1):
        if isinstance(document, dict) and document.get("kind") == "List" and isinstance(document.get("items"), list):
            for item in document["items"]:
                yield index, item
        elif document is not None:
            yield index, document


def _is_candidate(document: Any) -> bool:
    """Whether the document claims to be (or could only be meant as) a LlamaDeployment."""
    if not isinstance(document, dict):
        return True
    api_version, kind = document.get("apiVersion"), document.get("kind")
    if api_version is None or kind is None:
        return True
    return kind == KIND or (isinstance(api_version, str) and api_version.startswith(f"{GROUP}/"))


def _check_text(source: str, text: str, report: Report) -> None:
    try:
        items = documents.load_all(text)
    except (yaml.YAMLError, RecursionError, ValueError) as error:
        report.unreadable.append({"source": source, "error": f"not valid YAML: {str(error)[:500]}"})
        return
    except (LookupError, AttributeError, TypeError) as error:
        # PyYAML's constructors fail so on a value that its explicit tag does not fit (`!!int ""`, `!!bool maybe`,
        # `!!timestamp now`); the command ended in a traceback.
        problem = f"a value does not fit its tag ({type(error).__name__}: {str(error)[:200]})"
        report.unreadable.append({"source": source, "error": f"not valid YAML: {problem}"})
        return
    knowledge = load_knowledge()
    for index, document in _documents(items):
        where = f"{source}#{index}"
        if _is_candidate(document):
            report.results.append((where, validate(document, knowledge)))
        else:
            report.skipped.append(
                {"source": where, "apiVersion": str(document.get("apiVersion")), "kind": str(document.get("kind"))}
            )


def check(paths: list[str], stdin: Any = None) -> Report:
    """Read and validate every input (pure apart from reading files and stdin)."""
    report = Report()
    for raw in paths:
        if raw == "-":
            try:
                text = (stdin or sys.stdin).read()
            except (OSError, UnicodeDecodeError) as error:
                report.unreadable.append({"source": "-", "error": str(error)})
                continue
            _check_text("-", text, report)
            continue
        path = Path(raw)
        if not path.exists():
            report.unreadable.append({"source": raw, "error": "no such file or directory"})
            continue
        for file in _files(path):
            try:
                text = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as error:
                report.unreadable.append({"source": str(file), "error": str(error)})
                continue
            _check_text(str(file), text, report)
    return report


def _summary(report: Report) -> dict[str, int]:
    invalid = sum(1 for _, result in report.results if not result.valid)
    return {
        "resources": len(report.results),
        "valid": len(report.results) - invalid,
        "invalid": invalid,
        "unreadable": len(report.unreadable),
    }


def as_json(report: Report) -> dict[str, Any]:
    return {
        "resources": [{"source": source, **result.as_dict()} for source, result in report.results],
        "skipped": report.skipped,
        "unreadable": report.unreadable,
        "summary": _summary(report),
    }


# Findings repeat across a fleet's manifests (same model, GPU and settings, same message); wrapping was a third of
# a 5,000-manifest run (issue #21).
@functools.lru_cache(maxsize=4096)
def _wrap(text: str, indent: int, width: int) -> str:
    pad = " " * indent
    return textwrap.fill(text, width=max(40, width), initial_indent=pad, subsequent_indent=pad)


def as_table(report: Report, quiet: bool = False, width: int | None = None) -> str:
    width = width or min(shutil.get_terminal_size((120, 24)).columns, 140)
    lines: list[str] = []
    for source, result in report.results:
        name = "/".join(part for part in (result.namespace, result.name) if part) or "(unnamed)"
        lines.append(f"{'VALID' if result.valid else 'INVALID':8} {name}  ({source})")
        for finding in result.findings:
            if quiet and finding.severity == "info":
                continue
            lines.append(f"  {finding.severity.upper():8} {finding.code}  {finding.field}".rstrip())
            lines.append(_wrap(finding.message, 11, width))
            if finding.fix:
                lines.append(_wrap(f"fix: {finding.fix}", 11, width))
    for item in report.skipped:
        lines.append(f"{'SKIPPED':8} {item['apiVersion']}/{item['kind']}  ({item['source']})")
    for item in report.unreadable:
        lines.append(f"{'ERROR':8} {item['source']}: {item['error']}")
    summary = _summary(report)
    errors = sum(len(result.errors) for _, result in report.results)
    lines.append(
        f"{summary['resources']} LlamaDeployment(s): {summary['valid']} valid, {summary['invalid']} invalid "
        f"({errors} error finding(s)); {summary['unreadable']} unreadable input(s)"
    )
    return "\n".join(lines) + "\n"


def execute(args: argparse.Namespace) -> int:
    # What is loaded by now (modules, pydantic's validators, the knowledge bundle) lives as long as the process:
    # keep the cyclic collector from walking it again on each full collection while thousands of manifests are
    # read and validated (about 7% of a 5,000-manifest run).
    gc.freeze()
    report = check(args.paths)
    if args.output == "json":
        sys.stdout.write(json.dumps(as_json(report), indent=2) + "\n")
    else:
        sys.stdout.write(as_table(report, quiet=args.quiet))
    return report.status
