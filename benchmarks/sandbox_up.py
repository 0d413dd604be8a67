"""Sandbox figures: the last cold build time of each component, and warm `sandbox up` times.

    python benchmarks/sandbox_up.py [--runs N] [--nodes N] [--also-nodes N] [--json PATH]

Warm `up` (target: < 30 s) is measured here: binaries cached, a fresh cluster each run (etcd starts empty), from
the first process started to every fake node Ready. --also-nodes adds one more `up` with a one-pool shape of that
many nodes (e.g. 1000). The baseline, from the same runs: the control plane alone (etcd and the API server
healthy), which any `up` waits for before the rest of the sandbox starts.
Build times are read from $LLAMAOPS_CACHE/sandbox/build-times.tsv, which scripts/sandbox-build.sh appends to on
each real build; for a cold figure, build into an empty cache: LLAMAOPS_CACHE=$(mktemp -d) bash
scripts/sandbox-build.sh.
Each `up` runs in a temporary cache with the binaries of the main one linked in, on free ports, so a running
sandbox is left alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

from llamaops_sandbox import cluster, pki
from llamaops_sandbox.layout import Layout, default_cache

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import report  # noqa: E402 - needs the repository root on sys.path

TARGET_WARM_UP_S = 30.0
CONTROL_PLANE_READY = "kube-apiserver healthy"  # cluster.up's log line once etcd and the API server serve


def build_times(layout: Layout) -> dict[str, int]:
    """The latest recorded build time per component."""
    times: dict[str, int] = {}
    path = layout.cache / "sandbox" / "build-times.tsv"
    if path.exists():
        for line in path.read_text().splitlines():
            _, component, seconds = line.split("\t")
            times[component] = int(seconds)
    return times


def last_build(layout: Layout) -> str:
    """The date of the last recorded build, or empty."""
    path = layout.cache / "sandbox" / "build-times.tsv"
    lines = path.read_text().splitlines() if path.exists() else []
    return lines[-1].split("\t")[0][:10] if lines else ""


def shape_with(nodes: int) -> dict[str, object]:
    gpu = {"product": "NVIDIA-H100-80GB-HBM3", "count": 8, "memoryMiB": 81559, "family": "hopper"}
    return {"pools": [{"name": "bench", "count": nodes, "gpu": gpu}]}


def private_layout(main: Layout, tmp: Path) -> Layout:
    """A layout under ``tmp`` sharing the main cache's binaries and Go modules (KWOK stages, LWS manifests), with
    its certificates made beforehand: a warm `up` finds them from the previous one."""
    os.environ["GOMODCACHE"] = str(main.gomodcache)
    layout = cluster.private_layout(tmp, main)
    pki.ensure_pki(layout.pki)
    return layout


def timed_up(layout: Layout, shape: Path) -> tuple[float, float, int]:
    """One `up` and `down`: (seconds to every node Ready, seconds to the control plane alone, nodes)."""
    start = time.monotonic()
    marks: dict[str, float] = {}

    def log(message: str) -> None:
        if message.startswith(CONTROL_PLANE_READY):
            marks.setdefault("control plane", time.monotonic() - start)

    try:
        state, _ = cluster.up(layout, shape, log)
        elapsed = time.monotonic() - start
    finally:
        cluster.down(layout)
    if "control plane" not in marks:
        raise SystemExit(f"no {CONTROL_PLANE_READY!r} line from cluster.up: the baseline cannot be read")
    return elapsed, marks["control plane"], state.nodes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=0, help="a one-pool shape of N nodes (default: e2e/nodes.yaml)")
    parser.add_argument("--also-nodes", type=int, default=0, help="one more `up` with a one-pool shape of N nodes")
    parser.add_argument("--json", type=Path, help="also write the figures here (benchmarks/report.py)")
    args = parser.parse_args()
    main_layout = Layout(default_cache())

    times = build_times(main_layout)
    for component, seconds in times.items():
        print(f"build {component:<20} {seconds:>6d} s  (last real build)")
    if times:
        print(f"build {'total':<20} {sum(times.values()):>6d} s")

    with tempfile.TemporaryDirectory(prefix="llamaops-sandbox-up-") as tmp:
        layout = private_layout(main_layout, Path(tmp) / "cache")
        shape = layout.default_shape
        if args.nodes:
            shape = Path(tmp) / "shape.yaml"
            shape.write_text(yaml.safe_dump(shape_with(args.nodes)))
        ups, planes = [], []
        nodes = 0
        for _ in range(args.runs):
            elapsed, plane, nodes = timed_up(layout, shape)
            ups.append(elapsed)
            planes.append(plane)
            print(f"warm up: {elapsed:6.1f} s  ({nodes} nodes Ready; control plane alone {plane:.1f} s)")
        large = None
        if args.also_nodes:
            large_shape = Path(tmp) / "large.yaml"
            large_shape.write_text(yaml.safe_dump(shape_with(args.also_nodes)))
            large = timed_up(layout, large_shape)
            print(f"warm up: {large[0]:6.1f} s  ({large[2]:,} nodes Ready; control plane alone {large[1]:.1f} s)")
    up, plane = statistics.median(ups), statistics.median(planes)
    print(f"warm up median over {len(ups)} runs: {up:.1f} s (target < 30 s); control plane alone {plane:.1f} s")

    figures = [
        report.Figure(
            f"warm up, {nodes:,} nodes (median of {len(ups)})",
            round(up, 1),
            "s",
            f"< {TARGET_WARM_UP_S:g} s",
            up < TARGET_WARM_UP_S,
            f"control plane alone {plane:.1f} s",
        )
    ]
    if large is not None:
        figures.append(
            report.Figure(
                f"warm up, {large[2]:,} nodes",
                round(large[0], 1),
                "s",
                baseline=f"control plane alone {large[1]:.1f} s",
            )
        )
    if times:
        built = last_build(main_layout)
        figures.append(
            report.Figure(
                f"cold build, all components (recorded by sandbox-build.sh {built})",
                sum(times.values()),
                "s",
                baseline=", ".join(f"{component} {seconds} s" for component, seconds in times.items()),
            )
        )
    report.write(args.json, "sandbox_up", figures, runs=args.runs, ups=[round(u, 2) for u in ups], build_times=times)
    return 0


if __name__ == "__main__":
    sys.exit(main())
