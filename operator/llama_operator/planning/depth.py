"""How deep a document nests, and the finding for one nested too deep.

Only ``spec.model.config.inline`` keeps unknown fields, so only there can a user nest values at will; the apiserver
stores up to 10,000 levels (Go's JSON decoder limit). Objects that deep break their readers: at Python's default
recursion limit kopf fails on ~500 levels (copying the object) and its list call on ~1,000 (the operator exits),
and kubectl cannot list a namespace holding a 10,000-level object. A real config.json nests three or four levels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llama_operator.planning.findings import Finding
from llama_operator.planning.schema import field_path

# Levels below the document itself (the document is level 0). Real objects use under 10.
MAX_DEPTH = 32
MAX_FIELD = 200  # the status keeps field paths to 512 characters; keys along the way may be long


def _children(node: Any) -> list[tuple[Any, Any]]:
    if isinstance(node, Mapping):
        return list(node.items())
    if isinstance(node, list):
        return list(enumerate(node))
    return []


def too_deep(document: Any, limit: int = MAX_DEPTH) -> tuple[Any, ...] | None:
    """The path to the first value nested deeper than ``limit`` levels, or None. Iterative: the input may be
    nested far past the recursion limit."""
    stack: list[tuple[tuple[Any, ...], Any]] = [((), document)]
    while stack:
        path, node = stack.pop()
        for key, child in _children(node):
            if len(path) + 1 > limit:
                return (*path, key)
            stack.append(((*path, key), child))
    return None


def check_depth(document: Any) -> list[Finding]:
    path = too_deep(document)
    if path is None:
        return []
    parts = [str(part) if not isinstance(part, int) else part for part in path[:8]]
    where = field_path(parts)
    where = where if len(where) <= MAX_FIELD else where[: MAX_FIELD - 3] + "..."
    return [
        Finding(
            "nesting_too_deep",
            "error",
            where,
            f"values nest more than {MAX_DEPTH} levels deep under {where}; objects that deep break the operator's "
            "and kubectl's JSON handling",
            "flatten the value (a model's config.json in spec.model.config.inline nests a few levels at most)",
        )
    ]
