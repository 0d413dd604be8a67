"""The facts this plugin shares with the operator, read from facts.json (package data next to this module).

The file is generated from the operator's known-issue registry and crash-signature list
(`llama-operator plugin-facts --write`); the plugin cannot import the operator, and keeps no copy of its own.
"""

import json
from importlib import resources
from typing import Any

FACTS_FILE = "facts.json"


def _load() -> Any:
    return json.loads(resources.files(__package__).joinpath(FACTS_FILE).read_text(encoding="utf-8"))


_FACTS = _load()

# (name, pattern, ignore_case), in match order: the report's signatures.
SIGNATURES: tuple[tuple[str, str, bool], ...] = tuple(
    (s["name"], s["pattern"], s["ignore_case"]) for s in _FACTS["signatures"]
)
# (known issue id, vLLM specifier set, "" for any, pattern): the issues the report names.
KNOWN_ISSUES: tuple[tuple[str, str, str], ...] = tuple(
    (i["id"], i["vllm_versions"], i["pattern"]) for i in _FACTS["known_issues"]
)
# patch name -> the vLLM specifier set in which it removes its known issue.
PATCHED_VERSIONS: dict[str, str] = {name: p["vllm_versions"] for name, p in _FACTS["patches"].items()}
