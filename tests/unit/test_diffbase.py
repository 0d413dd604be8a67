"""kopf's diff base stays small (handlers.diffbase): found by tests/integration/test_bad_input.py, where a spec of
400 KB made kopf's last-handled-configuration annotation overflow Kubernetes' 256 KiB, and kopf retried forever."""

from __future__ import annotations

import json
from typing import Any

import kopf

from llama_operator.handlers.diffbase import ESSENCE_MAX, CompactDiffBaseStorage
from llama_operator.handlers.startup import apply_settings

STORAGE = CompactDiffBaseStorage(prefix="llamaops.dev", key="last-handled-configuration")


def body(note: str, **labels: str) -> kopf.Body:
    raw: dict[str, Any] = {
        "apiVersion": "llamaops.dev/v1alpha1",
        "kind": "LlamaDeployment",
        "metadata": {"name": "n", "namespace": "ns", "uid": "u", "labels": labels},
        "spec": {"podMetadata": {"annotations": {"note": note}}},
        "status": {"phase": "Invalid"},
    }
    return kopf.Body(raw)


def test_a_small_essence_is_kopfs_own() -> None:
    kopfs = kopf.AnnotationsDiffBaseStorage(prefix="llamaops.dev", key="last-handled-configuration")
    assert STORAGE.build(body=body("short")) == kopfs.build(body=body("short"))


def test_a_large_essence_is_stored_as_a_digest_that_still_tells_changes() -> None:
    large = STORAGE.build(body=body("x" * 400_000))
    assert len(json.dumps(large)) < 200
    assert STORAGE.build(body=body("x" * 400_000)) == large
    assert STORAGE.build(body=body("y" * 400_000)) != large
    assert STORAGE.build(body=body("x" * 400_000, team="a")) != large
    assert STORAGE.build(body=body("x" * (ESSENCE_MAX // 2))) != large


def test_the_operator_uses_it() -> None:
    settings = kopf.OperatorSettings()
    apply_settings(settings)
    assert isinstance(settings.persistence.diffbase_storage, CompactDiffBaseStorage)
