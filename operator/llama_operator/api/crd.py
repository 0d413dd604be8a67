"""Builds the CustomResourceDefinition from the pydantic models (pure: returns a dict).

pydantic emits JSON Schema 2020-12; Kubernetes wants a *structural* OpenAPI v3 schema: every node typed, no
``$ref``, no ``anyOf`` for optional fields, boolean ``exclusiveMinimum``, no ``additionalProperties`` next to
``properties``. ``to_structural`` does that translation.
"""

from __future__ import annotations

from typing import Any

import yaml

from llama_operator.api.resource import GROUP, KIND, PLURAL, SHORT_NAME, VERSION, LlamaDeployment

_DROP = frozenset({"title", "$defs"})


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return node
    target = dict(defs[ref.rsplit("/", 1)[-1]])
    # Siblings of $ref (description, default) describe this use of the type and win over the type's own.
    target.update({key: value for key, value in node.items() if key != "$ref"})
    return target


def to_structural(node: Any, defs: dict[str, Any]) -> Any:
    """Translate one pydantic JSON Schema node (recursively) into a structural OpenAPI v3 schema node."""
    if isinstance(node, list):
        return [to_structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    node = _resolve(node, defs)
    any_of = node.get("anyOf")
    if any_of is not None:
        # Optional[X] is anyOf [X, null]; Kubernetes drops nulls of non-nullable fields, so keep X alone.
        non_null = [option for option in any_of if option.get("type") != "null"]
        if len(non_null) != 1:
            raise ValueError(f"cannot express anyOf with {len(non_null)} non-null branches structurally")
        merged = dict(_resolve(non_null[0], defs))
        merged.update({key: value for key, value in node.items() if key != "anyOf"})
        node = merged
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "default" and (value is None or isinstance(value, dict | list)):
            continue
        if key == "additionalProperties" and (value is False or value is True):
            continue  # false: pruning does this; true: expressed by preserve-unknown-fields
        if key == "const":
            out["enum"] = [value]
            continue
        if key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
            continue
        if key == "properties":
            out[key] = {name: to_structural(child, defs) for name, child in value.items()}
            continue
        out[key] = to_structural(value, defs)
    if out.get("x-kubernetes-preserve-unknown-fields"):
        out.pop("additionalProperties", None)
        out["type"] = "object"
    return out


def openapi_schema() -> dict[str, Any]:
    """The OpenAPI v3 schema of a LlamaDeployment object."""
    schema = LlamaDeployment.model_json_schema(by_alias=True, mode="validation")
    defs = schema.get("$defs", {})
    root: dict[str, Any] = to_structural(schema, defs)
    properties = root["properties"]
    properties["apiVersion"] = {"type": "string", "description": "APIVersion of this object (llamaops.dev/v1alpha1)."}
    properties["kind"] = {"type": "string", "description": "Kind of this object (LlamaDeployment)."}
    properties["metadata"] = {"type": "object"}
    root.pop("required", None)
    root["required"] = ["spec"]
    return root


PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Model", "type": "string", "jsonPath": ".spec.model.name", "description": "Model served."},
    {"name": "TP", "type": "integer", "jsonPath": ".spec.engine.tensorParallelSize", "description": "Tensor parallel."},
    {
        "name": "Max Len",
        "type": "integer",
        "jsonPath": ".status.effective.maxModelLen",
        "description": "Effective max model length.",
    },
    {"name": "Desired", "type": "integer", "jsonPath": ".spec.replicas", "description": "Desired replicas."},
    {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas", "description": "Ready replicas."},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Phase."},
    {
        "name": "Rollout",
        "type": "string",
        "jsonPath": ".status.rollout.phase",
        "description": "Progressive rollout: Canary, Promoting, Completed, Halted or Superseded.",
    },
    {
        "name": "New",
        "type": "integer",
        "jsonPath": ".status.rollout.newReplicas",
        "description": "Replicas on the new configuration while a rollout moves.",
        "priority": 1,
    },
    {
        "name": "Reason",
        "type": "string",
        "jsonPath": ".status.reason",
        "description": "What most explains the phase (e.g. Unschedulable, ImagePullFailed); the conditions say more.",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp", "description": "Time since creation."},
]


def crd_manifest() -> dict[str, Any]:
    """The complete ``apiextensions.k8s.io/v1`` CustomResourceDefinition."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": [SHORT_NAME],
                "categories": ["all"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                }
            ],
        },
    }


CRD_FILE = f"{PLURAL}.{GROUP}.yaml"
HEADER = (
    "# Generated by `llama-operator crd --write` from the pydantic models in operator/llama_operator/api/.\n"
    "# Do not edit by hand: tests/unit/test_crd.py fails when this file drifts from the models.\n"
)


def crd_yaml() -> str:
    """The CRD as the YAML text kept in crds/ (stable key order, so diffs show real changes only)."""
    return HEADER + yaml.safe_dump(crd_manifest(), sort_keys=False, width=120, allow_unicode=True)
