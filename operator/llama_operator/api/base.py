"""Shared model configuration: camelCase in YAML, snake_case in Python, unknown fields rejected."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    """Base of every API object. ``extra="forbid"`` turns a misspelt field into a finding instead of silence."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=False,
    )


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, Any]:
    """One CEL ``x-kubernetes-validations`` entry, placed on a schema with ``json_schema_extra``."""
    entry: dict[str, Any] = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry
