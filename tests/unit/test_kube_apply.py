"""The server-side apply request the operator builds (handlers.kube): path and body, pure parts."""

from __future__ import annotations

import json

import pytest
import yaml

from llama_operator.handlers.kube import apply_body, object_path


@pytest.mark.parametrize(
    ("api_version", "kind", "path"),
    [
        ("apps/v1", "Deployment", "/apis/apps/v1/namespaces/ns/deployments/llama"),
        ("v1", "Service", "/api/v1/namespaces/ns/services/llama"),
        ("policy/v1", "PodDisruptionBudget", "/apis/policy/v1/namespaces/ns/poddisruptionbudgets/llama"),
        (
            "monitoring.coreos.com/v1",
            "ServiceMonitor",
            "/apis/monitoring.coreos.com/v1/namespaces/ns/servicemonitors/llama",
        ),
        (
            "leaderworkerset.x-k8s.io/v1",
            "LeaderWorkerSet",
            "/apis/leaderworkerset.x-k8s.io/v1/namespaces/ns/leaderworkersets/llama",
        ),
        ("keda.sh/v1alpha1", "ScaledObject", "/apis/keda.sh/v1alpha1/namespaces/ns/scaledobjects/llama"),
    ],
)
def test_each_child_kind_has_its_path(api_version: str, kind: str, path: str) -> None:
    manifest = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "llama", "namespace": "ns"}}
    assert object_path(manifest) == path


STRINGS = [
    "tea \U0001f375 and \U0004d0af",  # beyond the BMP
    "next\x85line\u2028sep\ufeffbom\x00nul\ttab",  # YAML refuses these raw
    "a literal \\ud83d\\ude00, not a pair",  # backslashes that only look like an escape
    "\\\U0001f375 after a backslash",
]


@pytest.mark.parametrize("value", STRINGS)
def test_the_body_reads_back_as_the_same_yaml(value: str) -> None:
    manifest = {"metadata": {"annotations": {"note": value}}}
    body = apply_body(manifest).decode("ascii")  # every character escaped
    assert yaml.safe_load(body) == manifest
    assert "\\ud8" not in body.replace("\\\\", "")  # no surrogate escape: the API server's YAML refuses them


def test_the_clients_own_serialisation_is_what_fails() -> None:
    assert "\\ud83c" in json.dumps({"note": "\U0001f375"})
