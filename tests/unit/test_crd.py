"""The CRD in crds/ is generated from the pydantic models, is a structural schema, and carries the API's rules."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from llama_operator.api import LlamaDeployment
from llama_operator.api.crd import CRD_FILE, crd_manifest, crd_yaml
from llama_operator.cli import main

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "crds" / CRD_FILE


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    nodes = [(path, node)]
    for name, child in node.get("properties", {}).items():
        nodes += _walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        nodes += _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        nodes += _walk(node["additionalProperties"], f"{path}{{}}")
    return nodes


def test_crds_folder_matches_the_models() -> None:
    assert CRD_PATH.read_text(encoding="utf-8") == crd_yaml(), "crds/ drifted: run `llama-operator crd --write`"


def test_crd_check_command_detects_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crd", "--check", "--dir", str(CRD_PATH.parent)]) == 0
    stale = tmp_path / CRD_FILE
    stale.write_text(crd_yaml().replace("shortNames:\n    - llama", "shortNames:\n    - lama"), encoding="utf-8")
    assert main(["crd", "--check", "--dir", str(tmp_path)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert main(["crd", "--write", "--dir", str(tmp_path)]) == 0
    assert main(["crd", "--check", "--dir", str(tmp_path)]) == 0


def test_schema_is_structural() -> None:
    # The apiextensions rules for a structural schema that pydantic output would otherwise break.
    for path, node in _walk(_schema()):
        for banned in ("$ref", "anyOf", "oneOf", "allOf", "not", "$defs", "const", "title"):
            assert banned not in node, f"{path or '<root>'} has {banned}"
        if path != ".metadata" and not node.get("x-kubernetes-preserve-unknown-fields"):
            assert node.get("type") in ("object", "array", "string", "integer", "number", "boolean"), path
        if "properties" in node:
            assert "additionalProperties" not in node, path
        for key in ("exclusiveMinimum", "exclusiveMaximum"):
            assert isinstance(node.get(key, False), bool), path
        if node.get("type") == "array":
            assert isinstance(node.get("items"), dict), path
        for default in ("default",):
            assert default not in node or node[default] is not None, path


def test_every_field_is_described() -> None:
    undescribed = [
        path for path, node in _walk(_schema()) if path and path != ".metadata" and not node.get("description")
    ]
    undescribed = [path for path in undescribed if not path.endswith(("[]", "{}"))]
    assert undescribed == []


def test_cel_rules_say_only_what_the_schema_cannot() -> None:
    # Ranges are minimum/maximum (the API server refuses with its own message); a CEL rule that repeats one costs
    # CEL budget and says the same twice. What is left relates fields to each other.
    rules = {
        (path, rule["rule"]) for path, node in _walk(_schema()) for rule in node.get("x-kubernetes-validations", [])
    }
    assert rules == {
        (".spec.model.config", "!(has(self.inline) && has(self.configMapRef))"),
        (".spec.model.config", "has(self.inline) || has(self.configMapRef)"),
        (".spec.resources.tolerations[]", "self.operator != 'Exists' || !has(self.value)"),
    }
    bound = re.compile(r"self\.(\w+) [<>]=? -?[0-9.]+")
    for path, rule in rules:
        assert not bound.search(rule), (path, rule)
    spec = _schema()["properties"]["spec"]["properties"]
    engine = spec["engine"]["properties"]
    assert (engine["tensorParallelSize"]["minimum"], engine["pipelineParallelSize"]["minimum"]) == (1, 1)
    assert (engine["maxModelLen"]["minimum"], engine["maxNumSeqs"]["minimum"]) == (1, 1)
    assert engine["gpuMemoryUtilization"]["exclusiveMinimum"] is True
    assert engine["gpuMemoryUtilization"]["maximum"] == 1
    assert spec["replicas"]["minimum"] == 0
    assert spec["resources"]["properties"]["gpusPerNode"]["minimum"] == 1
    assert spec["resources"]["properties"]["nodeCount"]["minimum"] == 1
    for path, node in _walk(_schema()):
        for rule in node.get("x-kubernetes-validations", []):
            assert rule["message"], path
            assert len(rule["rule"]) < 200, path
        # CEL cost estimation needs bounded strings and lists wherever a rule could reach them.
        if node.get("type") == "array" and path.startswith(".spec"):
            assert "maxItems" in node, path


def test_status_times_are_rfc3339_date_times() -> None:
    # The API server checks `format: date-time`; every time the operator writes is RFC 3339 (health.policy.rfc3339).
    times = {path for path, node in _walk(_schema()) if node.get("format") == "date-time"}
    assert times == {
        ".status.conditions[].lastTransitionTime",
        ".status.lastKnownGood.time",
        ".status.remediations[].time",
        ".status.remediation.crashLoop.firstCrashTime",
        ".status.remediation.crashLoop.detectedTime",
        ".status.remediation.lastActionTime",
    }


def test_monitoring_has_no_alerts_switch() -> None:
    # Alerts are the chart's PrometheusRule, for every LlamaDeployment; a per-object switch would do nothing.
    monitoring = _schema()["properties"]["spec"]["properties"]["monitoring"]
    assert set(monitoring["properties"]) == {"enabled", "serviceMonitor", "interval"}
    assert "prometheusRule.enabled" in monitoring["description"]


def test_subresources_printer_columns_and_names() -> None:
    crd = crd_manifest()
    version = crd["spec"]["versions"][0]
    assert crd["spec"]["names"]["shortNames"] == ["llama"]
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"
    columns = {column["name"]: column["jsonPath"] for column in version["additionalPrinterColumns"]}
    assert columns == {
        "Model": ".spec.model.name",
        "TP": ".spec.engine.tensorParallelSize",
        "Max Len": ".status.effective.maxModelLen",
        "Desired": ".spec.replicas",
        "Ready": ".status.readyReplicas",
        "Phase": ".status.phase",
        "Reason": ".status.reason",
        "Age": ".metadata.creationTimestamp",
    }


def test_printer_column_paths_exist_in_the_schema() -> None:
    schema = _schema()
    for column in crd_manifest()["spec"]["versions"][0]["additionalPrinterColumns"]:
        node = schema
        for part in column["jsonPath"].strip(".").split("."):
            if part == "metadata":
                break
            node = node["properties"][part]
        else:
            assert node["type"] == column["type"] or (column["type"] == "integer" and node["type"] == "integer")


def test_pydantic_model_and_crd_agree_on_an_example() -> None:
    document = yaml.safe_load((ROOT / "examples" / "llama4-scout.yaml").read_text(encoding="utf-8"))
    resource = LlamaDeployment.model_validate(document)
    assert resource.spec.engine.tensor_parallel_size == 8
    dumped = resource.model_dump(by_alias=True, exclude_none=True, mode="json")
    assert dumped["spec"]["engine"]["maxModelLen"] == 1048576
