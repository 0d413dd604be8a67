"""`llama-operator plugin-facts`: print or write the facts file the patched image's plugin reads, generated from
the known-issue registry and the crash-report signatures (knowledge/plugin_facts.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llama_operator.cli.generated import register_generator
from llama_operator.knowledge.plugin_facts import FACTS_FILE, plugin_facts_json

# Relative, as crds/ is for `crd`: run from the repository root.
PLUGIN_PACKAGE = Path("images/vllm/llamaops_vllm")


def register(subparsers: Any) -> None:
    register_generator(
        subparsers,
        "plugin-facts",
        "print (or write) the facts file of the patched image's plugin",
        f"Generate {FACTS_FILE} (the crash-report signatures, known-issue ids and patterns, and patched vLLM ranges "
        f"the plugin reads) from knowledge/data/known_issues.yaml and crash_signatures.yaml. Without options it "
        f"prints the JSON; --write stores it in --dir; --check exits 1 when that file differs.",
        FACTS_FILE,
        PLUGIN_PACKAGE,
        plugin_facts_json,
    )
