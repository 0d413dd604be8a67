"""Spec values the operator copies into its children are checked by Kubernetes' rules (planning.kubernetes).

Each case was found by tests/integration/test_bad_input.py: the webhook admitted the object, the apiserver then
refused the Deployment or Service the operator rendered for it, and the operator retried forever without a status.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from llama_operator.planning import validate
from llama_operator.planning.kubernetes import is_label_value, is_qualified_name

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def scout(**spec: Any) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((EXAMPLES / "llama4-scout.yaml").read_text(encoding="utf-8"))
    document["spec"].update(spec)
    return document


def errors(document: dict[str, Any]) -> list[tuple[str, str]]:
    return [(finding.code, finding.field) for finding in validate(document).errors]


def test_every_example_passes_these_rules() -> None:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        codes = [f.code for f in validate(yaml.safe_load(path.read_text(encoding="utf-8"))).errors]
        assert not {"invalid_name", "invalid_label", "invalid_annotation", "invalid_toleration"} & set(codes), path


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("app", True),
        ("example.com/team", True),
        ("a" * 63, True),
        ("a" * 64, False),
        ("", False),
        ("-app", False),
        ("a/b/c", False),
        ("Example.com/team", False),
        ("/team", False),
        ("team name", False),
    ],
)
def test_label_keys(key: str, ok: bool) -> None:
    assert is_qualified_name(key) is ok


@pytest.mark.parametrize(("value", "ok"), [("", True), ("v1.2_x", True), (":", False), ("é", False), ("a" * 64, False)])
def test_label_values(value: str, ok: bool) -> None:
    assert is_label_value(value) is ok


@pytest.mark.parametrize("name", ["a.b", "1-scout", "x" * 64, "Scout"])
def test_a_name_no_service_can_take_is_refused(name: str) -> None:
    document = scout()
    document["metadata"]["name"] = name
    assert ("invalid_name", "metadata.name") in errors(document)


def test_node_selector_and_gpu_product_must_be_label_values() -> None:
    # The finding that started it: nodeSelector {"x": ":"} -> "spec.template.spec.nodeSelector: Invalid value".
    document = scout()
    document["spec"]["resources"]["nodeSelector"] = {"x": ":"}
    assert errors(document) == [("invalid_label", "spec.resources.nodeSelector.x")]
    document = scout()
    document["spec"]["resources"]["gpuProduct"] = "NVIDIA H100"
    assert ("invalid_label", "spec.resources.gpuProduct") in errors(document)


def test_pod_labels_and_annotations() -> None:
    assert errors(scout(podMetadata={"labels": {"team": "a b"}})) == [("invalid_label", "spec.podMetadata.labels.team")]
    assert errors(scout(podMetadata={"annotations": {"no good": "x"}})) == [
        ("invalid_annotation", "spec.podMetadata.annotations.no good")
    ]
    # 400 KB: past Kubernetes' 256 KiB of annotations per object.
    assert errors(scout(podMetadata={"annotations": {"note": "x" * 400_000}})) == [
        ("annotations_too_large", "spec.podMetadata.annotations")
    ]
    assert errors(scout(podMetadata={"annotations": {"note": "x" * 100_000}})) == []


@pytest.mark.parametrize(
    ("toleration", "field"),
    [
        ({"key": "bad key", "operator": "Exists"}, "key"),
        ({"operator": "Equal", "value": "x"}, "operator"),
        ({"key": "k", "value": "a b"}, "value"),
        ({"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 5}, "tolerationSeconds"),
    ],
)
def test_tolerations_kubernetes_refuses(toleration: dict[str, Any], field: str) -> None:
    document = scout()
    document["spec"]["resources"]["tolerations"] = [toleration]
    assert errors(document) == [("invalid_toleration", f"spec.resources.tolerations[0].{field}")]


def test_secret_and_claim_names() -> None:
    document = scout()
    document["spec"]["model"]["tokenSecretRef"] = {"name": "HF_Token"}
    assert errors(document) == [("invalid_secret_ref", "spec.model.tokenSecretRef.name")]
    document["spec"]["model"]["tokenSecretRef"] = {"name": "hf-token", "key": "a/b"}
    assert errors(document) == [("invalid_secret_ref", "spec.model.tokenSecretRef.key")]
    document = scout()
    document["spec"]["model"]["source"] = "pvc:///weights"
    assert errors(document) == [("invalid_model_source", "spec.model.source")]


def test_a_long_key_is_cut_in_the_field_path() -> None:
    document = scout()
    document["spec"]["resources"]["nodeSelector"] = {"k" * 1000: "v"}
    [(code, field)] = errors(document)
    assert code == "invalid_label"
    assert len(field) < 120
