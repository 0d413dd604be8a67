"""Spec values the operator copies into the objects it creates, checked by the rules Kubernetes applies to them.

The CRD bounds them loosely (a node-selector value is any string); the apiserver applies the strict rules only
when the operator creates the Service or Deployment. It refused them there, and the operator retried forever: the
LlamaDeployment never got a status. As findings they are refused at admission instead, and reported in status
when no webhook is in the way. The rules are k8s.io/apimachinery's (validation.IsQualifiedName and friends).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from llama_operator.api import LlamaDeploymentSpec
from llama_operator.api.resource import ObjectMeta
from llama_operator.knowledge.describe import describe
from llama_operator.planning.findings import Finding

_NAME_PART = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")
_DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+")
NAME_MAX = 63
SUBDOMAIN_MAX = 253
# TotalAnnotationSizeLimitB, keys and values in bytes; room kept for the annotations the operator adds itself.
ANNOTATIONS_MAX = 256 * 1024
ANNOTATIONS_RESERVED = 1024
LABEL_RULE = "at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
KEY_RULE = f"an optional DNS subdomain prefix and '/', then {LABEL_RULE}"


def is_dns_subdomain(value: str) -> bool:
    return len(value) <= SUBDOMAIN_MAX and _DNS_SUBDOMAIN.fullmatch(value) is not None


def is_label_value(value: str) -> bool:
    return value == "" or (len(value) <= NAME_MAX and _NAME_PART.fullmatch(value) is not None)


def is_qualified_name(value: str) -> bool:
    """A label or annotation key: ``[prefix/]name``."""
    parts = value.split("/")
    if len(parts) > 2 or (len(parts) == 2 and not (parts[0] and is_dns_subdomain(parts[0]))):
        return False
    name = parts[-1]
    return bool(name) and len(name) <= NAME_MAX and _NAME_PART.fullmatch(name) is not None


def _at(prefix: str, key: str) -> str:
    # Keys are the user's and may be long: the status keeps field paths to 512 characters.
    return f"{prefix}.{key if len(key) <= 60 else key[:57] + '...'}"


def _name(metadata: ObjectMeta) -> Iterator[Finding]:
    name = metadata.name
    if name and not (len(name) <= NAME_MAX and _DNS_1035.fullmatch(name)):
        suggestion = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:NAME_MAX].rstrip("-")
        suggestion = suggestion if suggestion[:1].isalpha() else f"llama-{suggestion}"[:NAME_MAX].rstrip("-")
        yield Finding(
            "invalid_name",
            "error",
            "metadata.name",
            f"name {describe(name)} cannot name the Service the operator creates for it: a Service name is a "
            "DNS-1035 label, at most 63 lowercase letters, digits and '-', starting with a letter",
            f"rename it, e.g. {suggestion}",
        )


def _labels(labels: Mapping[str, str], field: str, what: str) -> Iterator[Finding]:
    for key, value in labels.items():
        if not is_qualified_name(key):
            yield Finding(
                "invalid_label",
                "error",
                _at(field, key),
                f"{what} key {describe(key)} is not a valid Kubernetes label key ({KEY_RULE})",
                "use a valid label key",
            )
        elif not is_label_value(value):
            yield Finding(
                "invalid_label",
                "error",
                _at(field, key),
                f"{what} value {describe(value)} is not a valid Kubernetes label value ({LABEL_RULE}, or empty)",
                "use a valid label value",
            )


def _gpu_product(product: str) -> Iterator[Finding]:
    if not is_label_value(product):
        yield Finding(
            "invalid_label",
            "error",
            "spec.resources.gpuProduct",
            f"gpuProduct {describe(product)} is the value of the node label the pods select on, and not a valid "
            f"Kubernetes label value ({LABEL_RULE})",
            "use the nvidia.com/gpu.product label of the GPU nodes, e.g. NVIDIA-H100-80GB-HBM3",
        )


def _annotations(annotations: Mapping[str, str]) -> Iterator[Finding]:
    field = "spec.podMetadata.annotations"
    for key in annotations:
        if not is_qualified_name(key):
            yield Finding(
                "invalid_annotation",
                "error",
                _at(field, key),
                f"annotation key {describe(key)} is not a valid Kubernetes annotation key ({KEY_RULE})",
                "use a valid annotation key",
            )
    size = sum(len(key.encode()) + len(value.encode()) for key, value in annotations.items())
    if size > ANNOTATIONS_MAX - ANNOTATIONS_RESERVED:
        yield Finding(
            "annotations_too_large",
            "error",
            field,
            f"the pod annotations take {size:,} bytes; Kubernetes allows {ANNOTATIONS_MAX:,} in all, and the "
            f"operator adds its own (keep {ANNOTATIONS_RESERVED:,} free)",
            "move large data out of annotations (a ConfigMap, a volume)",
        )


def _tolerations(spec: LlamaDeploymentSpec) -> Iterator[Finding]:
    for index, toleration in enumerate(spec.resources.tolerations):
        field = f"spec.resources.tolerations[{index}]"
        problem = None
        if toleration.key and not is_qualified_name(toleration.key):
            problem = "key", f"key {describe(toleration.key)} is not a valid taint key ({KEY_RULE})"
        elif not toleration.key and toleration.operator != "Exists":
            problem = "operator", "an empty key matches every taint and needs operator Exists"
        elif toleration.operator == "Equal" and not is_label_value(toleration.value or ""):
            problem = "value", f"value {describe(toleration.value)} is not a valid taint value ({LABEL_RULE})"
        elif toleration.toleration_seconds is not None and toleration.effect != "NoExecute":
            problem = "tolerationSeconds", "tolerationSeconds applies to effect NoExecute only"
        if problem is not None:
            yield Finding(
                "invalid_toleration",
                "error",
                f"{field}.{problem[0]}",
                f"toleration {index}: {problem[1]}; Kubernetes refuses the pods",
                "correct the toleration (kubectl explain pod.spec.tolerations)",
            )


def _references(spec: LlamaDeploymentSpec) -> Iterator[Finding]:
    ref = spec.model.token_secret_ref
    if ref is not None and not is_dns_subdomain(ref.name):
        yield Finding(
            "invalid_secret_ref",
            "error",
            "spec.model.tokenSecretRef.name",
            f"{describe(ref.name)} is not a valid Secret name (a DNS subdomain: lowercase letters, digits, '-', '.')",
            "name the Secret that holds the token",
        )
    elif ref is not None and not (len(ref.key) <= SUBDOMAIN_MAX and _CONFIG_KEY.fullmatch(ref.key)):
        yield Finding(
            "invalid_secret_ref",
            "error",
            "spec.model.tokenSecretRef.key",
            f"{describe(ref.key)} is not a valid Secret key (letters, digits, '-', '_' or '.')",
            "name the key of the Secret that holds the token",
        )
    source = spec.model.source or ""
    claim = source.removeprefix("pvc://").partition("/")[0] if source.startswith("pvc://") else None
    if claim is not None and not is_dns_subdomain(claim):
        yield Finding(
            "invalid_model_source",
            "error",
            "spec.model.source",
            f"{describe(claim)} is not a valid PersistentVolumeClaim name (a DNS subdomain)",
            "write pvc://<claim>/<path> with the claim's name",
        )


def check_kubernetes_fields(metadata: ObjectMeta, spec: LlamaDeploymentSpec) -> list[Finding]:
    """Error findings for every spec value the apiserver would refuse in the objects the operator renders."""
    resources = spec.resources
    return [
        *_name(metadata),
        *_gpu_product(resources.gpu_product),
        *_labels(resources.node_selector, "spec.resources.nodeSelector", "nodeSelector"),
        *_labels(spec.pod_metadata.labels, "spec.podMetadata.labels", "pod label"),
        *_annotations(spec.pod_metadata.annotations),
        *_tolerations(spec),
        *_references(spec),
    ]
