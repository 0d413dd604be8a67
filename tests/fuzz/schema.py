"""Hypothesis strategies for LlamaDeployment documents, drawn from the CRD's openAPIV3Schema.

``documents(wildness)`` walks the schema: each node becomes a strategy for what the schema allows (type, enum,
pattern, length and range bounds, required keys). With probability ``wildness`` a node is replaced by an
off-schema value (wrong type, huge number, unicode, empty string, null, a nested mess), an object gains unknown
fields or loses a required one. Known-good values (catalog model names, GPU products, vLLM versions, common
TP sizes) are mixed into the fields the planner looks up, so that schema-valid documents reach its deeper checks
instead of all stopping at "unknown model".
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from llama_operator.knowledge import load_knowledge

CRD = Path(__file__).resolve().parents[2] / "crds" / "llamadeployments.llamaops.dev.yaml"
# Text the apiserver's JSON can carry (no lone surrogates) but nothing else restricts: any script, controls, emoji.
TEXT = st.characters(exclude_categories=["Cs"])
ODD_STRINGS = ["", " ", "\x00", "\u202e", "ü", "🦙" * 8, "null", "true", "NaN", "1e9", "-1", "0x10", "${HOME}", "'"]
ROOT_KEYS = ["apiVersion", "kind", "metadata", "spec"]
HUGE_INTS = [0, -1, -(2**31), 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 10**30, -(10**30)]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from(HUGE_INTS),
    st.floats(allow_nan=False, allow_infinity=False),  # JSON has no NaN or infinity
    st.text(TEXT, max_size=24),
    st.sampled_from(ODD_STRINGS),
)
# Any JSON value: what an off-schema node becomes.
wild = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(TEXT, max_size=12), children, max_size=4),
    max_leaves=10,
)


@cache
def crd_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text(encoding="utf-8"))
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


@cache
def hints() -> dict[str, list[Any]]:
    """Known-good values per field path (with a few near misses), mixed into the schema's own."""
    knowledge = load_knowledge()
    models = [name for facts in knowledge.models for name in (facts.name, *facts.hf_ids, *facts.aliases)]
    gpus = [name for facts in knowledge.gpus for name in (facts.product, *facts.aliases)]
    return {
        "apiVersion": ["llamaops.dev/v1alpha1"],
        "kind": ["LlamaDeployment"],
        "spec.model.name": [*models, "meta-llama/Llama-2-7b", "acme/unknown"],
        "spec.resources.gpuProduct": [*gpus, "NVIDIA-GeForce-RTX-4090"],
        "spec.engine.vllmVersion": ["0.8.3", "0.8.4", "0.9.2", "0.14.0", "0.32.0", "1.0.0rc1", "0.8.3.post1"],
        "spec.engine.tensorParallelSize": [1, 2, 4, 5, 8, 16],
        "spec.engine.pipelineParallelSize": [1, 2, 3],
        "spec.engine.gpuMemoryUtilization": [0.9, 0.95, 0.85],
        "spec.engine.maxModelLen": [1, 4096, 8192, 8193, 131072, 430000, 1000000, 1048576, 10485760],
        "spec.engine.quantization": ["fp8", "awq"],
        "spec.replicas": [0, 1, 2, 16],
        "spec.resources.gpusPerNode": [1, 4, 8],
        "spec.resources.nodeCount": [1, 2, 4],
    }


def chance(draw: st.DrawFn, rate: float) -> bool:
    """True with about probability ``rate``. Hypothesis favours small and boundary integers, so the window sits
    in the middle of the range (and shrinking, towards 0, leaves it: towards the schema)."""
    return abs(draw(st.integers(0, 1000)) - 500) < rate * 500


@st.composite
def _either(draw: st.DrawFn, usual: st.SearchStrategy[Any], rare: st.SearchStrategy[Any], rate: float) -> Any:
    return draw(rare) if chance(draw, rate) else draw(usual)


def _metadata() -> st.SearchStrategy[Any]:
    # Mostly names a Service can take too; now and then one only a custom resource can (digits first, dots).
    name = _either(
        st.from_regex(r"[a-z]([a-z0-9-]{0,30}[a-z0-9])?", fullmatch=True),
        st.from_regex(r"[a-z0-9]([a-z0-9.-]{0,70}[a-z0-9])?", fullmatch=True),
        0.1,
    )
    labels = st.dictionaries(st.from_regex(r"[a-z]{1,10}", fullmatch=True), st.text(TEXT, max_size=10), max_size=2)
    return st.fixed_dictionaries({"name": name}, optional={"labels": labels, "annotations": labels})


def _string(node: dict[str, Any]) -> st.SearchStrategy[Any]:
    low, high = node.get("minLength", 0), node.get("maxLength", 40)
    if "pattern" in node:
        return st.from_regex(node["pattern"], fullmatch=True).filter(lambda text: low <= len(text) <= high)
    return st.text(TEXT, min_size=low, max_size=min(high, 40))


def _number(node: dict[str, Any]) -> st.SearchStrategy[Any]:
    low, high = node.get("minimum"), node.get("maximum")
    if node["type"] == "integer":
        return st.integers(min_value=low, max_value=high)
    return st.floats(low, high, exclude_min=bool(node.get("exclusiveMinimum")), allow_nan=False, allow_infinity=False)


# How often an optional field is present: fields that need a partner (config: inline or configMapRef) rarely.
PRESENT = {"spec.model.config": 0.1, "status": 0.2, "spec.engine.tensorParallelSize": 0.8}
# How often a field with known-good values gets an arbitrary one the schema allows instead.
OFF_HINT = {"apiVersion": 0.05, "kind": 0.05}


@st.composite
def _object(
    draw: st.DrawFn, path: str, required: list[str], fields: dict[str, st.SearchStrategy[Any]], rate: float
) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for key, strategy in fields.items():
        if key in required or chance(draw, PRESENT.get(f"{path}.{key}".lstrip("."), 0.35)):
            value[key] = draw(strategy)
    if rate and required and chance(draw, rate):
        del value[draw(st.sampled_from(required))]
    if rate and chance(draw, rate):
        value[draw(st.text(TEXT, min_size=1, max_size=16))] = draw(wild)
    return value


def node_strategy(node: dict[str, Any], path: str, rate: float) -> st.SearchStrategy[Any]:
    """Values for one schema node at ``path``; off-schema with probability ``rate``."""
    strategy = _on_schema(node, path, rate)
    if path in hints():
        strategy = _either(st.sampled_from(hints()[path]), strategy, OFF_HINT.get(path, 0.2))
    return _either(strategy, wild, rate) if rate and path else strategy  # the root stays an object


def _on_schema(node: dict[str, Any], path: str, rate: float) -> st.SearchStrategy[Any]:
    kind = node.get("type")
    if "enum" in node:
        return st.sampled_from(node["enum"])
    if kind == "object" and "properties" in node:
        fields = {
            key: node_strategy(child, f"{path}.{key}".lstrip("."), rate) for key, child in node["properties"].items()
        }
        # The apiserver gives every object apiVersion, kind and metadata; the schema itself requires only spec.
        required = ROOT_KEYS if not path else [key for key in node.get("required", []) if key in fields]
        return _object(path, required, fields, rate)
    if kind == "object" and "additionalProperties" in node:
        values = node_strategy(node["additionalProperties"], f"{path}.*", rate)
        return st.dictionaries(
            st.text(TEXT, min_size=1, max_size=20), values, max_size=min(node.get("maxProperties", 4), 4)
        )
    if kind == "object" and path == "metadata":
        return _metadata()
    if kind == "object":  # x-kubernetes-preserve-unknown-fields: anything goes
        return st.dictionaries(st.text(TEXT, max_size=24), wild, max_size=6)
    if kind == "array":
        items = node_strategy(node["items"], f"{path}[]", rate)
        return st.lists(items, max_size=min(node.get("maxItems", 3), 3))
    if kind == "string":
        return _string(node)
    if kind in ("integer", "number"):
        return _number(node)
    if kind == "boolean":
        return st.booleans()
    return wild


@cache
def documents(wildness: float) -> st.SearchStrategy[Any]:
    """Whole documents from the CRD schema; ``wildness`` 0 keeps every node on the schema (CEL rules aside)."""
    return node_strategy(crd_schema(), "", wildness)


def violations(value: Any, node: dict[str, Any], path: str = "") -> list[str]:
    """Where ``value`` breaks the schema's types, enums, required keys and length limits (what the apiserver
    would refuse in a status the operator writes); CEL rules and patterns aside."""
    kind = node.get("type")
    found: list[str] = []
    if "enum" in node and value not in node["enum"]:
        return [f"{path}: {value!r} not in {node['enum']}"]
    if kind == "object" and isinstance(value, dict):
        found += [f"{path}.{key}: required" for key in node.get("required", []) if key not in value]
        properties, additional = node.get("properties", {}), node.get("additionalProperties")
        for key, child in value.items():
            schema = properties.get(key, additional)
            if isinstance(schema, dict):
                found += violations(child, schema, f"{path}.{key}")
    elif kind == "array" and isinstance(value, list):
        for index, item in enumerate(value):
            found += violations(item, node["items"], f"{path}[{index}]")
    elif kind == "string" and isinstance(value, str):
        if not node.get("minLength", 0) <= len(value) <= node.get("maxLength", len(value)):
            found.append(f"{path}: length {len(value)} outside [{node.get('minLength', 0)}, {node.get('maxLength')}]")
    elif kind == "integer" and not (isinstance(value, int) and not isinstance(value, bool)):
        found.append(f"{path}: {type(value).__name__} is not an integer")
    elif kind == "number" and not (isinstance(value, int | float) and not isinstance(value, bool)):
        found.append(f"{path}: {type(value).__name__} is not a number")
    elif kind == "boolean" and not isinstance(value, bool):
        found.append(f"{path}: {type(value).__name__} is not a boolean")
    elif kind in ("object", "array", "string") and not isinstance(value, dict | list | str):
        found.append(f"{path}: {type(value).__name__} is not {kind}")
    return found
