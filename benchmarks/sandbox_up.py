"""Sandbox figures: the last cold build time of each component, and warm `sandbox up` times.

    python benchmarks/sandbox_up.py [--runs N] [--nodes N]

Warm `up` (target: < 30 s) is measured here: binaries cached, a fresh cluster each run (etcd starts empty), from
the first process started to every fake node Ready. Build times are read from
$LLAMAOPS_CACHE/sandbox/build-times.tsv, which scripts/sandbox-build.sh appends to on each real build; for a cold
figure, build into an empty cache: LLAMAOPS_CACHE=$(mktemp -d) bash scripts/sandbox-build.sh.
Refuses to run while a sandbox is up (it would take it down).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

from llama_operator.sandbox import cluster
from llama_operator.sandbox.layout import Layout, default_cache


def build_times(layout: Layout) -> dict[str, int]:
    """The latest recorded build time per component."""
    times: dict[str, int] = {}
    path = layout.cache / "sandbox" / "build-times.tsv"
    if path.exists():
        for line in path.read_text().splitlines():
            _, component, seconds = line.split("\t")
            times[component] = int(seconds)
    return times


def shape_with(nodes: int) -> dict[str, object]:
    gpu = {"product": "NVIDIA-H100-80GB-HBM3", "count": 8, "memoryMiB": 81559, "family": "hopper"}
    return {"pools": [{"name": "bench", "count": nodes, "gpu": gpu}]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=0, help="a one-pool shape of N nodes (default: e2e/nodes.yaml)")
    args = parser.parse_args()
    layout = Layout(default_cache())
    if cluster.read_state(layout) is not None:
        print("a sandbox is running; stop it first (llama-operator sandbox down)", file=sys.stderr)
        return 2

    times = build_times(layout)
    for component, seconds in times.items():
        print(f"build {component:<20} {seconds:>6d} s  (last real build)")
    if times:
        print(f"build {'total':<20} {sum(times.values()):>6d} s")

    with tempfile.TemporaryDirectory() as tmp:
        shape = layout.default_shape
        if args.nodes:
            shape = Path(tmp) / "shape.yaml"
            shape.write_text(yaml.safe_dump(shape_with(args.nodes)))
        ups = []
        for _ in range(args.runs):
            start = time.monotonic()
            state, _ = cluster.up(layout, shape, lambda _m: None)
            ups.append(time.monotonic() - start)
            cluster.down(layout)
            print(f"warm up: {ups[-1]:6.1f} s  ({state.nodes} nodes Ready)")
    print(f"warm up median over {len(ups)} runs: {statistics.median(ups):.1f} s (target < 30 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
