"""Hypothesis strategies for mutations of the examples in examples/*.yaml.

``mutated()`` takes one example and applies one to four mutations at random places: drop a field, swap a value's
type, put in an extreme integer, a wrong enum value, a deep nest, a very long string, an unknown field, a null.
Most of each document stays realistic, so the planner's deeper checks see the damage, not just the schema's.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from tests.fuzz.schema import HUGE_INTS, ODD_STRINGS, TEXT, wild

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# Past Python's json recursion limit (~1,000 levels) too: the apiserver (Go) parses and stores such objects.
DEPTHS = [8, 64, 200, 900, 1500, 5000]
# Encoded sizes of very long strings, up to 1 MB: the apiserver stores objects up to 1.5 MiB (etcd's limit), and an
# UPDATE's review carries the object twice. One long string per document at most.
LENGTHS = [256, 1025, 4096, 70_000, 1_000_000]
ENUM_TYPOS = ["", "auto ", "AUTO", "Fp8", "Enforce\n", "off", "None", "Exists ", "NoSchedule-", "🦙"]

Path_ = tuple[Any, ...]


@cache
def examples() -> list[dict[str, Any]]:
    return [yaml.safe_load(path.read_text(encoding="utf-8")) for path in sorted(EXAMPLES.glob("*.yaml"))]


def paths(document: Any, max_depth: int = 12) -> list[Path_]:
    """Every place in a document down to ``max_depth`` (dict keys and list indices); not recursive, because an
    earlier mutation may have nested thousands of levels."""
    found: list[Path_] = []
    stack: list[tuple[Path_, Any]] = [((), document)]
    while stack:
        prefix, node = stack.pop()
        if prefix:
            found.append(prefix)
        if len(prefix) >= max_depth:
            continue
        children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        stack.extend(((*prefix, key), child) for key, child in children)
    return found


def nest(value: Any, depth: int, in_list: bool) -> Any:
    for _ in range(depth):
        value = [value] if in_list else {"a": value}
    return value


def long_text(unit: str, size: int) -> str:
    """``unit`` repeated to about ``size`` bytes of JSON (non-ASCII is escaped: "🦙" takes 12)."""
    return unit * max(1, size // (len(json.dumps(unit)) - 2))


def swapped(value: Any) -> Any:
    """The same content in another JSON type."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return int(value) if value.isdigit() else [value]
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, list):
        return {str(index): item for index, item in enumerate(value)}
    return 0


Mutation = Callable[[st.DrawFn, Any], Any]
MUTATIONS: dict[str, Mutation] = {
    "swap_type": lambda draw, value: swapped(value),
    "extreme_int": lambda draw, value: draw(st.sampled_from(HUGE_INTS) | st.integers(-(2**70), 2**70)),
    "bad_enum": lambda draw, value: draw(st.sampled_from(ENUM_TYPOS) | st.text(TEXT, max_size=12)),
    "deep_nesting": lambda draw, value: nest(value, draw(st.sampled_from(DEPTHS)), draw(st.booleans())),
    "long_string": lambda draw, value: long_text(
        draw(st.sampled_from(["x", "é", "🦙", "--"])), draw(st.sampled_from(LENGTHS))
    ),
    "odd_string": lambda draw, value: draw(st.sampled_from(ODD_STRINGS)),
    "null": lambda draw, value: None,
    "float": lambda draw, value: draw(st.floats(allow_nan=False, allow_infinity=False)),
    "any": lambda draw, value: draw(wild),
}


@st.composite
def mutated(draw: st.DrawFn) -> tuple[dict[str, Any], list[str]]:
    """A mutated example, and the names of the mutations applied (``drop``, ``unknown_field`` or a MUTATIONS key)."""
    document = copy.deepcopy(draw(st.sampled_from(examples())))
    applied: list[str] = []
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        place = draw(st.sampled_from(paths(document)))
        parent = document
        for part in place[:-1]:
            parent = parent[part]
        key = place[-1]
        what = draw(st.sampled_from(["drop", "unknown_field", *MUTATIONS]))
        if what == "long_string" and what in applied:
            what = "odd_string"  # one very long string per document: a real object stays under 1.5 MiB
        if what == "drop":
            del parent[key]
        elif what == "unknown_field" and isinstance(parent, dict):
            parent[draw(st.text(TEXT, min_size=1, max_size=16))] = draw(wild)
        elif what == "unknown_field":
            parent.append(draw(wild))
        else:
            parent[key] = MUTATIONS[what](draw, parent[key])
        applied.append(what)
    return document, applied
