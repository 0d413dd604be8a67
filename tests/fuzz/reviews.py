"""AdmissionReviews around generated LlamaDeployments, as the apiserver sends them to the webhook.

``cases()`` draws half its objects from the CRD schema (at four levels of wildness) and half from mutated
examples; four in five are CREATEs, the rest UPDATEs whose oldObject is an example, a schema-valid document or
the object itself (a metadata-only change), some of them of an object being deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from llama_operator.knowledge.describe import describe
from tests.fuzz.mutations import examples, mutated
from tests.fuzz.schema import chance, documents

WILDNESS = [0.0, 0.01, 0.03, 0.1]
GVK = {"group": "llamaops.dev", "version": "v1alpha1", "kind": "LlamaDeployment"}
GVR = {"group": "llamaops.dev", "version": "v1alpha1", "resource": "llamadeployments"}


@dataclass(frozen=True)
class Generated:
    """One generated object and where it came from (``schema@0.03``, ``mutation:drop+null``)."""

    source: str
    document: Any

    def __repr__(self) -> str:
        # Bounded: hypothesis prints a failing example, and a document may nest thousands of levels deep.
        return f"{type(self).__name__}({self.source!r}, {describe(self.document)})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


@dataclass(frozen=True, repr=False)
class Case(Generated):
    """A generated object in the AdmissionReview the apiserver would send for it."""

    review: dict[str, Any]

    @property
    def operation(self) -> str:
        return str(self.review["request"]["operation"])

    @property
    def old(self) -> Any:
        return self.review["request"].get("oldObject")


@st.composite
def objects(draw: st.DrawFn) -> Generated:
    """From the schema or a mutated example, half each."""
    if draw(st.booleans()):
        wildness = draw(st.sampled_from(WILDNESS))
        return Generated(f"schema@{wildness:g}", draw(documents(wildness)))
    document, applied = draw(mutated())
    return Generated("mutation:" + "+".join(applied), document)


def review(
    uid: str, operation: str, new: Any, old: Any = None, *, namespace: str = "fuzz", dry_run: bool = False
) -> dict[str, Any]:
    metadata = new.get("metadata") if isinstance(new, dict) else None
    name = metadata.get("name") if isinstance(metadata, dict) else None
    request: dict[str, Any] = {
        "uid": uid,
        "kind": GVK,
        "resource": GVR,
        "requestKind": GVK,
        "requestResource": GVR,
        "name": name if isinstance(name, str) else "",
        "namespace": namespace,
        "operation": operation,
        "userInfo": {"username": "fuzz", "groups": ["system:authenticated"]},
        "object": new,
        "dryRun": dry_run,
    }
    if old is not None:
        request["oldObject"] = old
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


@st.composite
def cases(draw: st.DrawFn) -> Case:
    generated = draw(objects())
    source, document = generated.source, generated.document
    uid = f"fuzz-{draw(st.integers(0, 2**63)):x}"
    if not chance(draw, 0.2):
        return Case(source, document, review(uid, "CREATE", document, dry_run=draw(st.booleans())))
    old_kind = draw(st.sampled_from(["example", "schema", "same"]))
    if old_kind == "same":
        old = document  # labels, annotations or a finalizer changed; the spec did not (shared: never mutated)
    else:
        old = draw(st.sampled_from(examples()) if old_kind == "example" else documents(0.0))
    new = document
    if isinstance(new, dict) and isinstance(new.get("metadata"), dict) and chance(draw, 0.2):
        new = {**new, "metadata": {**new["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    return Case(f"{source} (UPDATE from {old_kind})", new, review(uid, "UPDATE", new, old))
