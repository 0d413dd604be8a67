"""`llama-operator plugin-facts`: print or write the facts file the patched image's plugin reads, generated from
the known-issue registry and the crash-report signatures (knowledge/plugin_facts.py)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from llama_operator.cli.generated import add_modes, emit
from llama_operator.knowledge.plugin_facts import FACTS_FILE, plugin_facts_json

PLUGIN_PACKAGE = Path("images/vllm/llamaops_vllm")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "plugin-facts",
        help="print (or write) the facts file of the patched image's plugin",
        description=(
            f"Generate {FACTS_FILE} (the crash-report signatures, known-issue ids and patterns, and patched vLLM "
            f"ranges the plugin reads) from knowledge/data/known_issues.yaml and crash_signatures.yaml. Without "
            f"options it prints the JSON; --write stores it in --dir; --check exits 1 when that file differs."
        ),
    )
    parser.add_argument(
        "--dir", type=Path, default=PLUGIN_PACKAGE, help=f"the plugin's package folder (default: {PLUGIN_PACKAGE})"
    )
    add_modes(parser, FACTS_FILE)
    parser.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    return emit(args, plugin_facts_json(), args.dir / FACTS_FILE, "plugin-facts")
