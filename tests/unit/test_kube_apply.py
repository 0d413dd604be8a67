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
    ],
)
def test_each_child_kind_has_its_path(api_version: str, kind: str, path: str) -> None:
    manifest = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "llama", "namespace": "ns"}}
    assert object_path(manifest) == path


def test_the_body_keeps_characters_beyond_the_bmp_as_utf8() -> None:
    manifest = {"metadata": {"annotations": {"note": "tea \U0001f375 and \U0004d0af"}}}
    body = apply_body(manifest)
    assert b"\\ud8" not in body.lower()  # no surrogate-pair escapes: the API server's YAML decoder refuses them
    assert "\U0001f375".encode() in body
    assert yaml.safe_load(body.decode()) == manifest  # JSON that reads back as the same YAML
    assert "\\ud83c" in json.dumps(manifest)  # what the client's own serialisation sends
