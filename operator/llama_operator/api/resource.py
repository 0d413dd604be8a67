"""The LlamaDeployment object: apiVersion, kind, metadata, spec, status."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError

from llama_operator.api.base import ApiModel
from llama_operator.api.spec import LlamaDeploymentSpec
from llama_operator.api.status import LlamaDeploymentStatus

GROUP = "llamaops.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "LlamaDeployment"
PLURAL = "llamadeployments"
SHORT_NAME = "llama"


class ObjectMeta(ApiModel):
    """The metadata fields validation reads; the API server's own fields pass through untouched."""

    model_config = ConfigDict(extra="ignore")

    name: str | None = Field(default=None, max_length=253, description="Name of the LlamaDeployment.")
    namespace: str | None = Field(default=None, max_length=63, description="Namespace of the LlamaDeployment.")
    generation: int | None = Field(default=None, description="Spec generation, set by the API server.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels of the LlamaDeployment.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations of the LlamaDeployment.")


class LlamaDeployment(ApiModel):
    """A Llama model served by vLLM."""

    api_version: Literal["llamaops.dev/v1alpha1"] = Field(
        alias="apiVersion", description="APIVersion of this object (llamaops.dev/v1alpha1)."
    )
    kind: Literal["LlamaDeployment"] = Field(description="Kind of this object (LlamaDeployment).")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Standard object metadata.")
    spec: LlamaDeploymentSpec = Field(description="Desired state: the model, engine and GPUs.")
    status: LlamaDeploymentStatus | None = Field(default=None, description="Observed state, written by the operator.")


def without_status(body: Mapping[str, Any]) -> dict[str, Any]:
    """The object as the user wrote it: status is the operator's own and never validated."""
    return {key: value for key, value in dict(body).items() if key != "status"}


def parse_llama(body: Mapping[str, Any]) -> LlamaDeployment | None:
    """The object as the model, or None when it does not parse (validation says why, as findings)."""
    try:
        return LlamaDeployment.model_validate(without_status(body))
    except ValidationError:
        return None


def parse_status(body: Mapping[str, Any]) -> LlamaDeploymentStatus:
    """Its status as the model; one an incompatible operator version wrote starts over."""
    try:
        return LlamaDeploymentStatus.model_validate(body.get("status") or {})
    except ValidationError:
        return LlamaDeploymentStatus()
