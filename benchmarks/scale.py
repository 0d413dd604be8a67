"""Convergence at scale: N LlamaDeployments on a KWOK cluster of many fake GPU nodes, against the floor of applying
the same N rendered Deployments directly with kubectl. Reports both times, their ratio (target <= 1.5x at N=1,000)
and the operator's peak RSS (target < 300 MB at N=1,000).

    python benchmarks/scale.py [--n 100] [--nodes 1000] [--profile FILE]

--profile attaches py-spy to the operator for its run and writes collapsed stacks (flamegraph.pl's input) to FILE,
with a summary of the hottest functions printed at the end.

Runs its own sandbox under a temporary LLAMAOPS_CACHE (binaries shared with the main cache), so a running sandbox
is left alone. Each LlamaDeployment is Llama-3.1-8B on one H100.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import report  # noqa: E402 - needs the repository root on sys.path


def link_cache(tmp: Path) -> None:
    from llamaops_sandbox import cluster

    cluster.private_layout(tmp)
    os.environ["LLAMAOPS_CACHE"] = str(tmp)
    os.environ["GOMODCACHE"] = str(tmp / "go" / "mod")


@contextlib.contextmanager
def gpu_sandbox(tmp: Path, nodes: int, pool: str) -> Iterator[Any]:
    """A private sandbox under ``tmp`` (after link_cache) with ``nodes`` fake 8xH100 nodes and the LlamaDeployment
    CRD, taken down on exit. Yields the integration tier's Sandbox (tests.integration.conftest)."""
    from kubernetes import config
    from tests.integration.conftest import Sandbox, install_crd

    from llamaops_sandbox import cluster
    from llamaops_sandbox.layout import Layout, default_cache

    layout = Layout(default_cache())
    shape = tmp / "shape.yaml"
    gpu = {"product": "NVIDIA-H100-80GB-HBM3", "count": 8, "memoryMiB": 81559, "family": "hopper"}
    shape.write_text(yaml.safe_dump({"pools": [{"name": pool, "count": nodes, "gpu": gpu}]}))
    state, _ = cluster.up(layout, shape, lambda _m: None)
    try:
        sandbox = Sandbox(layout, state, config.new_client_from_config(config_file=str(layout.kubeconfig)))
        install_crd(sandbox)
        yield sandbox
    finally:
        cluster.down(layout)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--profile", type=Path, help="write py-spy collapsed stacks of the operator here")
    parser.add_argument("--json", type=Path, help="also write the figures here (benchmarks/report.py)")
    parser.add_argument("--memory", type=Path, help="trace the operator's allocations; write the top sites here")
    parser.add_argument("--skip-floor", action="store_true", help="only the operator's run (profiling)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="llamaops-scale-") as tmp:
        link_cache(Path(tmp))
        # Imported after LLAMAOPS_CACHE points at the temporary cache.
        from kubernetes import client
        from tests.integration.conftest import make_namespace, wait_for
        from tests.integration.operator_process import OperatorProcess

        from llama_operator.api import LlamaDeployment
        from llama_operator.planning import validate
        from llama_operator.render import Owner, children
        from llamaops_sandbox import cluster

        with gpu_sandbox(Path(tmp), args.nodes, "scale") as sandbox:
            layout, api = sandbox.layout, sandbox.api
            apps = client.AppsV1Api(api)
            custom = client.CustomObjectsApi(api)
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
            floor_s = float("nan")
            if not args.skip_floor:
                apply_list(manifests)

                def floor_ready() -> bool:
                    items = apps.list_namespaced_deployment(floor).items
                    return sum(1 for d in items if (d.status.available_replicas or 0) >= 1) >= args.n

                wait_for("floor Deployments available", floor_ready, timeout=args.timeout, interval=1)
                floor_s = time.monotonic() - began

            llama_ns = make_namespace(sandbox, "scale-llamas")
            env = _tracemalloc_env(Path(tmp), args.memory) if args.memory else None
            operator = OperatorProcess(sandbox, "scale-*", "scale", env=env).start()
            assert operator.proc is not None
            profiler = start_profiler(operator.proc.pid, args.profile) if args.profile else None
            try:
                items = [document(llama_ns, i) for i in range(args.n)]
                began = time.monotonic()
                apply_list(items)

                shown = [0.0]

                def all_running() -> bool:
                    listed = custom.list_namespaced_custom_object(
                        "llamaops.dev", "v1alpha1", llama_ns, "llamadeployments"
                    )
                    running = sum(1 for o in listed["items"] if (o.get("status") or {}).get("phase") == "Running")
                    if time.monotonic() - shown[0] >= 10:
                        # Progress, and where the time goes: children applied, workloads available, status Running.
                        shown[0] = time.monotonic()
                        workloads = apps.list_namespaced_deployment(llama_ns).items
                        available = sum(1 for d in workloads if (d.status.available_replicas or 0) >= 1)
                        print(
                            f"  {shown[0] - began:6.1f} s: {len(workloads)} Deployments applied, "
                            f"{available} available, {running} Running; "
                            f"operator CPU {cpu_seconds(operator.proc.pid):.1f} s",
                            flush=True,
                        )
                    return running >= args.n

                wait_for("LlamaDeployments Running", all_running, timeout=args.timeout, interval=1)
                operator_s = time.monotonic() - began
                rss = peak_rss_mb(operator.proc.pid)
                cpu = cpu_seconds(operator.proc.pid)
                if args.memory:
                    operator.proc.send_signal(10)  # SIGUSR1: the hook below writes its snapshot
                    wait_for("allocation snapshot", args.memory.exists, timeout=300, interval=1)
            finally:
                if profiler is not None:
                    profiler.send_signal(2)  # py-spy writes its output on SIGINT
                    profiler.wait(timeout=60)
                operator.stop()
    print(f"nodes {args.nodes}, N {args.n}")
    print(f"floor (kubectl apply of N rendered Deployments, all available): {floor_s:.1f} s")
    print(f"operator (N LlamaDeployments, all Running):                   {operator_s:.1f} s")
    print(
        f"ratio {operator_s / floor_s:.2f}x (target <= 1.5x at N=1,000); "
        f"operator peak RSS {rss:.0f} MB (target < 300 MB)"
    )
    print(f"operator CPU {cpu:.1f} s over the run ({100 * cpu / operator_s:.0f}% of one core)")
    at = f"N={args.n:,}, {args.nodes:,} nodes"
    report.write(
        args.json,
        "scale",
        [
            report.Figure(
                f"convergence ratio, {at}",
                round(operator_s / floor_s, 2),
                "x",
                "<= 1.5x at N=1,000",
                operator_s / floor_s <= 1.5 if args.n >= 1000 else None,
                f"kubectl floor {floor_s:.1f} s vs operator {operator_s:.1f} s",
            ),
            report.Figure(
                f"operator peak RSS, {at}",
                round(rss),
                "MB",
                "< 300 MB at N=1,000",
                rss < 300 if args.n >= 1000 else None,
                f"operator CPU {cpu:.0f} s",
            ),
        ],
    )
    if args.profile:
        summarise(args.profile)
    if args.memory:
        print(f"\nallocations (tracemalloc) -> {args.memory}:\n{args.memory.read_text()}")
    return 0


_MEMORY_HOOK = """
import os, signal, tracemalloc
tracemalloc.start(8)
def _dump(*_):
    snapshot = tracemalloc.take_snapshot()
    lines = []
    for key in ("filename", "traceback"):
        for stat in snapshot.statistics(key)[:15]:
            frames = stat.traceback.format(limit=-6 if key == "traceback" else 1)
            lines.append(f"{stat.size / 2**20:8.1f} MiB {stat.count:9d} blocks  " + " <- ".join(reversed(frames)))
        lines.append("")
    out = os.environ["LLAMAOPS_TRACEMALLOC_OUT"]
    with open(out + ".tmp", "w") as f:
        f.write("\\n".join(lines))
    os.replace(out + ".tmp", out)
signal.signal(signal.SIGUSR1, _dump)
"""


def _tracemalloc_env(tmp: Path, out: Path) -> dict[str, str]:
    """A sitecustomize that starts tracemalloc in the operator and dumps the top allocation sites on SIGUSR1."""
    hook = tmp / "tracemalloc-hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_MEMORY_HOOK)
    out.unlink(missing_ok=True)
    path = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "LLAMAOPS_TRACEMALLOC_OUT": str(out.resolve())}


def start_profiler(pid: int, out: Path) -> subprocess.Popen[bytes]:
    py_spy = Path(sys.executable).with_name("py-spy")
    argv = [str(py_spy), "record", "--pid", str(pid), "--format", "raw", "--output", str(out), "--rate", "50"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarise(stacks: Path, top: int = 25) -> None:
    """Own time and inclusive time per function from py-spy's collapsed stacks."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in stacks.read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        samples = int(count)
        total += samples
        names = frames.split(";")
        own[names[-1]] = own.get(names[-1], 0) + samples
        for name in set(names):
            inclusive[name] = inclusive.get(name, 0) + samples
    print(f"\nprofile: {total} samples -> {stacks}")
    for title, table in (("own", own), ("inclusive", inclusive)):
        print(f"top {top} by {title} time:")
        for name, samples in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
            print(f"  {100 * samples / total:5.1f}%  {name}")


if __name__ == "__main__":
    sys.exit(main())
