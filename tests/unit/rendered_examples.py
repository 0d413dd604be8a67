"""The examples rendered by the operator's own builders, and the pod templates their workloads would make: what the
security tests judge (test_render_security here, test_security through the API server's PodSecurity admission)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from llama_operator.api import LlamaDeployment
from llama_operator.planning import validate
from llama_operator.render import Owner, children

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def rendered(example: str, namespace: str = "serving") -> list[dict[str, Any]]:
    document = yaml.safe_load((EXAMPLES / example).read_text())
    result = validate(document)
    assert result.valid, result.errors
    spec = LlamaDeployment.model_validate(document).spec
    owner = Owner(document["metadata"]["name"], namespace, "uid-1", 1)
    return children(owner, spec, result.effective, result.plan, service_monitors=True)


def pod_templates(manifests: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, pod template) for every pod a workload of the render would make."""
    for manifest in manifests:
        if manifest["kind"] == "Deployment":
            yield "Deployment", manifest["spec"]["template"]
        elif manifest["kind"] == "LeaderWorkerSet":
            group = manifest["spec"]["leaderWorkerTemplate"]
            yield "LeaderWorkerSet leader", group["leaderTemplate"]
            yield "LeaderWorkerSet worker", group["workerTemplate"]
