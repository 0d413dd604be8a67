"""Prints, as JSON, the vLLM container's command and args the operator renders for each example manifest.

Runs with the operator's venv (vLLM's pins conflict with it), not the engine venv:
``.venv/bin/python tests/engine/render_args.py [examples/*.yaml]``. The manifests come from the reconcile path's own
``plan()`` (validate, then render the children), so they are what the operator would apply.

Output: ``{file name: {"vllm_version", "kind", "image", "command", "args", "refused"}}``; ``command`` is null where
the image's entrypoint runs, ``refused`` lists the error codes of an example the operator does not deploy (then
kind, image, command and args are null).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from llama_operator.handlers.reconcile import plan
from llama_operator.render.deployment import CONTAINER

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def vllm_container(manifest: dict[str, Any]) -> dict[str, Any]:
    """The container that runs vLLM's server: the Deployment's, or the LeaderWorkerSet leader's."""
    if manifest["kind"] == "Deployment":
        pod = manifest["spec"]["template"]["spec"]
    else:
        pod = manifest["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]
    (container,) = (c for c in pod["containers"] if c["name"] == CONTAINER)
    return dict(container)


def render(path: Path) -> dict[str, Any]:
    (document,) = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    metadata = document.setdefault("metadata", {})
    metadata.setdefault("namespace", "default")
    metadata.update(uid=f"uid-{path.stem}", generation=1)  # what the API server adds
    planned = plan(document, service_monitors=False)
    out: dict[str, Any] = {
        "vllm_version": document["spec"]["engine"]["vllmVersion"],
        "refused": sorted({finding.code for finding in planned.result.errors}),
        "kind": None,
        "image": None,
        "command": None,
        "args": None,
    }
    workloads = [m for m in planned.manifests if m["kind"] in ("Deployment", "LeaderWorkerSet")]
    if workloads:
        (workload,) = workloads
        container = vllm_container(workload)
        out.update(
            kind=workload["kind"], image=container["image"], command=container.get("command"), args=container["args"]
        )
    return out


def main(argv: list[str]) -> None:
    paths = [Path(arg) for arg in argv] or sorted(EXAMPLES.glob("*.yaml"))
    json.dump({path.name: render(path) for path in paths}, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1:])
