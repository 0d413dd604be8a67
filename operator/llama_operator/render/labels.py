"""Labels and names shared by every child of a LlamaDeployment."""

from __future__ import annotations

from dataclasses import dataclass

from llama_operator.api import API_VERSION, KIND

MANAGED_BY = "llama-operator"
# Children carry the owner's name here; the operator finds a child's LlamaDeployment through it.
OWNER_LABEL = "llamaops.dev/deployment"
# The pod-template hash of the effective config: a change rolls the pods, a scale does not.
CONFIG_HASH_ANNOTATION = "llamaops.dev/config-hash"
# The LlamaDeployment generation a child was rendered from ("the spec revision").
SPEC_GENERATION_ANNOTATION = "llamaops.dev/spec-generation"
OPENAI_PORT = 8000
PORT_NAME = "http"


@dataclass(frozen=True, slots=True)
class Owner:
    """The LlamaDeployment a child belongs to: what an ownerReference needs."""

    name: str
    namespace: str
    uid: str
    generation: int

    def reference(self) -> dict[str, object]:
        # controller + blockOwnerDeletion: the garbage collector deletes children with their owner, foreground
        # deletion waits for them.
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def selector_labels(name: str) -> dict[str, str]:
    """The labels that select a LlamaDeployment's pods (immutable in a Deployment's selector)."""
    return {"app.kubernetes.io/name": "vllm", "app.kubernetes.io/instance": name, OWNER_LABEL: name}


def common_labels(name: str) -> dict[str, str]:
    return {
        **selector_labels(name),
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/component": "server",
    }


def metadata(owner: Owner, name: str | None = None) -> dict[str, object]:
    return {
        "name": name or owner.name,
        "namespace": owner.namespace,
        "labels": common_labels(owner.name),
        "annotations": {SPEC_GENERATION_ANNOTATION: str(owner.generation)},
        "ownerReferences": [owner.reference()],
    }
