"""The sandbox's KWOK image-pull stage (e2e/kwok/pod-image-pull.yaml), as far as it can be read without KWOK:
switched on by a pod annotation only, and weighted to win over KWOK's own pod-ready stage, which matches a Pending
pod too. What KWOK does with it is tests/integration/test_pod_causes.py's."""

from __future__ import annotations

from typing import Any

import yaml

from llamaops_sandbox.layout import find_repo

STAGE = find_repo() / "e2e" / "kwok" / "pod-image-pull.yaml"


def _stages() -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in yaml.safe_load_all(STAGE.read_text())}


def test_two_stages_for_pods_annotated_to_fail_their_pull() -> None:
    stages = _stages()
    assert set(stages) == {"llamaops-pod-image-pull-error", "llamaops-pod-image-pull-backoff"}
    for stage in stages.values():
        assert stage["kind"] == "Stage"
        assert stage["spec"]["resourceRef"] == {"apiGroup": "v1", "kind": "Pod"}
        keys = [e["key"] for e in stage["spec"]["selector"]["matchExpressions"]]
        assert '.metadata.annotations["llamaops.dev/fake-image-pull"]' in keys
        assert ".metadata.deletionTimestamp" in keys
        # KWOK picks among matching stages by weight; its pod-ready stage has none, so these always win.
        assert stage["spec"]["weight"] > 0


def test_the_kubelets_reasons_in_its_order() -> None:
    stages = _stages()
    error = stages["llamaops-pod-image-pull-error"]["spec"]
    assert "reason: ErrImagePull" in error["next"]["statusTemplate"]
    assert "phase: Pending" in error["next"]["statusTemplate"]
    waiting = next(e for e in error["selector"]["matchExpressions"] if "waiting.reason" in e["key"])
    assert (waiting["operator"], waiting["values"]) == ("NotIn", ["ErrImagePull"])
    backoff = stages["llamaops-pod-image-pull-backoff"]["spec"]
    assert "reason: ImagePullBackOff" in backoff["next"]["statusTemplate"]
    assert "Back-off pulling image %q: ErrImagePull: %s" in backoff["next"]["statusTemplate"]
    waiting = next(e for e in backoff["selector"]["matchExpressions"] if "waiting.reason" in e["key"])
    assert (waiting["operator"], waiting["values"]) == ("In", ["ErrImagePull"])
