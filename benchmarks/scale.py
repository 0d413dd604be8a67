"""Convergence at scale: N LlamaDeployments on a KWOK cluster of many fake GPU nodes, against the floor of applying
the same N rendered Deployments directly with kubectl. Reports both times, their ratio (target <= 1.5x at N=1,000)
and the operator's peak RSS (target < 300 MB at N=1,000).

    python benchmarks/scale.py [--n 100] [--nodes 1000]

Runs its own sandbox under a temporary LLAMAOPS_CACHE (binaries shared with the main cache), so a running sandbox
is left alone. Each LlamaDeployment is Llama-3.1-8B on one H100.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _link_cache(tmp: Path) -> None:
    main = Path(os.environ.get("LLAMAOPS_CACHE", Path.home() / ".cache" / "llama-operator"))
    (tmp / "sandbox").mkdir(parents=True)
    (tmp / "go").mkdir()
    (tmp / "sandbox" / "bin").symlink_to(main / "sandbox" / "bin")
    (tmp / "go" / "mod").symlink_to(main / "go" / "mod")
    os.environ["LLAMAOPS_CACHE"] = str(tmp)
    os.environ["GOMODCACHE"] = str(tmp / "go" / "mod")


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="llamaops-scale-") as tmp:
        _link_cache(Path(tmp))
        # Imported after LLAMAOPS_CACHE points at the temporary cache.
        from kubernetes import client, config
        from tests.integration.conftest import Sandbox, make_namespace, wait_for
        from tests.integration.operator_process import OperatorProcess

        from llama_operator.api import LlamaDeployment
        from llama_operator.planning import validate
        from llama_operator.render import Owner, children
        from llama_operator.sandbox import cluster
        from llama_operator.sandbox.layout import Layout, default_cache

        layout = Layout(default_cache())
        shape = Path(tmp) / "shape.yaml"
        gpu = {"product": "NVIDIA-H100-80GB-HBM3", "count": 8, "memoryMiB": 81559, "family": "hopper"}
        shape.write_text(yaml.safe_dump({"pools": [{"name": "scale", "count": args.nodes, "gpu": gpu}]}))
        state, _ = cluster.up(layout, shape, lambda _m: None)
        try:
            api = config.new_client_from_config(config_file=str(layout.kubeconfig))
            sandbox = Sandbox(layout, state, api)
            apps = client.AppsV1Api(api)
            custom = client.CustomObjectsApi(api)
            cluster.kubectl(
                layout, "apply", "--server-side", "-f", str(ROOT / "crds" / "llamadeployments.llamaops.dev.yaml")
            )
            cluster.kubectl(layout, "wait", "--for=condition=Established", "crd/llamadeployments.llamaops.dev")
            base = yaml.safe_load((ROOT / "examples" / "llama31-8b-h100.yaml").read_text())

            def apply_list(items: list[dict[str, Any]]) -> None:
                body = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
                cluster.kubectl(layout, "apply", "--server-side", "-f", "-", stdin=body)

            def document(namespace: str, index: int) -> dict[str, Any]:
                body = json.loads(json.dumps(base))
                body["metadata"] = {"name": f"llama-{index:04d}", "namespace": namespace}
                return body

            # The floor: the same Deployments, rendered by the operator's own builders, applied by kubectl.
            floor = make_namespace(sandbox, "floor")
            manifests = []
            for i in range(args.n):
                body = document(floor, i)
                result = validate(body)
                spec = LlamaDeployment.model_validate(body).spec
                owner = Owner(body["metadata"]["name"], floor, "00000000-0000-0000-0000-000000000000", 1)
                deployment = next(
                    m
                    for m in children(owner, spec, result.effective, result.plan, service_monitors=False)
                    if m["kind"] == "Deployment"
                )
                deployment["metadata"].pop("ownerReferences")
                manifests.append(deployment)
            began = time.monotonic()
            apply_list(manifests)

            def floor_ready() -> bool:
                items = apps.list_namespaced_deployment(floor).items
                return sum(1 for d in items if (d.status.available_replicas or 0) >= 1) >= args.n

            wait_for("floor Deployments available", floor_ready, timeout=args.timeout, interval=1)
            floor_s = time.monotonic() - began

            llama_ns = make_namespace(sandbox, "scale-llamas")
            operator = OperatorProcess(sandbox, "scale-*", "scale").start()
            try:
                items = [document(llama_ns, i) for i in range(args.n)]
                began = time.monotonic()
                apply_list(items)

                def all_running() -> bool:
                    listed = custom.list_namespaced_custom_object(
                        "llamaops.dev", "v1alpha1", llama_ns, "llamadeployments"
                    )
                    return (
                        sum(1 for o in listed["items"] if (o.get("status") or {}).get("phase") == "Running") >= args.n
                    )

                wait_for("LlamaDeployments Running", all_running, timeout=args.timeout, interval=1)
                operator_s = time.monotonic() - began
                assert operator.proc is not None
                rss = _peak_rss_mb(operator.proc.pid)
            finally:
                operator.stop()
        finally:
            cluster.down(layout)
    print(f"nodes {args.nodes}, N {args.n}")
    print(f"floor (kubectl apply of N rendered Deployments, all available): {floor_s:.1f} s")
    print(f"operator (N LlamaDeployments, all Running):                   {operator_s:.1f} s")
    print(
        f"ratio {operator_s / floor_s:.2f}x (target <= 1.5x at N=1,000); "
        f"operator peak RSS {rss:.0f} MB (target < 300 MB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
