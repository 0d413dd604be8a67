"""Bad input never breaks validation: arbitrary YAML/JSON values and mutated valid specs.

Properties: ``validate`` returns (never raises, never reports an internal error); a spec the schema refuses yields
at least one error finding; the JSON form is serialisable.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from llama_operator.api import LlamaDeployment
from llama_operator.planning import validate

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
VALID = [yaml.safe_load(path.read_text(encoding="utf-8")) for path in EXAMPLES]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["0.8.3", "0.14.0", "1e9", "-1", "", "NVIDIA-H100-80GB-HBM3", "llama-4-scout", "fp8", "auto"]),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


def _check(document: Any) -> None:
    result = validate(document)
    assert all(finding.code != "internal_error" for finding in result.findings), result.findings
    json.dumps(result.as_dict())
    try:
        LlamaDeployment.model_validate(document)
    except (ValidationError, TypeError):
        assert any(finding.severity == "error" for finding in result.findings), result.findings


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, child in node.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found += _paths(child, (*prefix, index))
    return found


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    document = copy.deepcopy(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = _paths(document)
        path = draw(st.sampled_from(paths))
        parent = document
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=12))] = draw(values)
        else:
            parent[path[-1]] = draw(values)
    return document


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_arbitrary_values_never_break_validation(document: Any) -> None:
    _check(document)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_valid_specs_never_break_validation(document: Any) -> None:
    _check(document)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_yaml_text_never_breaks_validation(text: str) -> None:
    try:
        documents = list(yaml.safe_load_all(text))
    except (yaml.YAMLError, RecursionError, ValueError):
        return
    for document in documents:
        _check(document)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "hidden_size": st.integers(min_value=-2, max_value=1 << 41) | st.floats() | st.text(max_size=4),
            "num_hidden_layers": st.integers(min_value=-2, max_value=200),
            "num_attention_heads": st.integers(min_value=-2, max_value=256),
            "num_key_value_heads": st.integers(min_value=-2, max_value=256),
            "vocab_size": st.integers(min_value=1, max_value=1 << 20),
            "max_position_embeddings": st.integers(min_value=1, max_value=1 << 30),
            "attention_chunk_size": st.none() | st.integers(min_value=-1, max_value=1 << 20),
            "rope_scaling": st.none() | st.dictionaries(st.sampled_from(["rope_type", "factor", "type"]), values),
        }
    ),
    st.integers(min_value=1, max_value=64),
)
def test_inline_model_configs_never_break_validation(config: dict[str, Any], tp: int) -> None:
    document = copy.deepcopy(VALID[0])
    document["spec"]["model"] = {"name": "acme/fuzzed", "config": {"inline": config}}
    document["spec"]["engine"]["tensorParallelSize"] = tp
    document["spec"]["engine"].pop("maxModelLen", None)
    _check(document)


def test_deeply_nested_values_are_reported_not_crashed_on() -> None:
    deep: Any = []
    for _ in range(5000):
        deep = [deep]
    for document in (
        {"apiVersion": deep, "kind": deep},
        {"apiVersion": "llamaops.dev/v1alpha1", "kind": "LlamaDeployment", "spec": {"model": deep}},
        {"apiVersion": "llamaops.dev/v1alpha1", "kind": "LlamaDeployment", "metadata": {"name": deep}, "spec": deep},
    ):
        _check(document)
