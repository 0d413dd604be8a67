"""Crash-loop detection and recovery times in the sandbox, median over N runs.

    python benchmarks/crashloop_times.py [--runs 10]

Each run: a Llama-4 Scout LlamaDeployment on vLLM 0.8.3 (upstream image, maxModelLen 12000, known issues set to
Warn) whose pods crash with the real block-table assert text while the upstream image runs (KWOK crash stage).
A real operator process detects, switches to the patched image and declares recovery once the new pod has served
10 s. Detection = first terminated container -> CrashLooping condition; recovery = first crash -> deployment
healthy again (the operator's own llamaops_crash_*_seconds histograms, read per run). Targets: detection < 5 s,
recovery < 60 s; the common KubePodCrashLooping alert waits 15 minutes. Needs a running sandbox.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kubernetes import config
from tests.integration.conftest import Sandbox, make_namespace, wait_for
from tests.integration.operator_process import OperatorProcess
from tests.integration.test_crashloop import UPSTREAM_083, crash
from tests.integration.test_reconcile import Llamas, example

from llama_operator.sandbox import cluster
from llama_operator.sandbox.layout import Layout, default_cache


def histogram_sum(text: str, name: str) -> tuple[float, float]:
    total = re.search(rf"^{name}_sum (\S+)$", text, re.M)
    count = re.search(rf"^{name}_count (\S+)$", text, re.M)
    return (float(total[1]) if total else 0.0, float(count[1]) if count else 0.0)


def recovered(llamas: Llamas) -> bool:
    status = llamas.status("llama4-scout")
    return status.get("phase") == "Running" and bool(status.get("remediations"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    layout = Layout(default_cache())
    state = cluster.read_state(layout)
    if state is None:
        print("no sandbox running: llama-operator sandbox up", file=sys.stderr)
        return 2
    sandbox = Sandbox(layout, state, config.new_client_from_config(config_file=str(layout.kubeconfig)))
    crd = layout.repo / "crds" / "llamadeployments.llamaops.dev.yaml"
    sandbox.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
    operator = OperatorProcess(sandbox, "bench-crash-*", "bench-crash").start()
    detections, recoveries = [], []
    try:
        for run in range(args.runs):
            llamas = Llamas(sandbox, make_namespace(sandbox, "bench-crash"))
            body = example("llama4-scout.yaml", llamas.namespace)
            body["spec"]["engine"].update({"vllmVersion": "0.8.3", "patched": False, "maxModelLen": 12000})
            body["spec"]["resources"]["gpuProduct"] = "NVIDIA-H200"
            body["spec"]["validation"] = {"knownIssues": "Warn"}
            body["spec"]["podMetadata"] = {"annotations": crash("block_table_gather", when=UPSTREAM_083)}
            before = operator.metrics()
            llamas.create(body)
            wait_for("recovered", lambda llamas=llamas: recovered(llamas), timeout=180)
            time.sleep(1)
            after = operator.metrics()
            for name, into in (
                ("llamaops_crash_detection_seconds", detections),
                ("llamaops_crash_recovery_seconds", recoveries),
            ):
                (s0, c0), (s1, c1) = histogram_sum(before, name), histogram_sum(after, name)
                if c1 > c0:
                    into.append((s1 - s0) / (c1 - c0))
            print(f"run {run + 1}: detection {detections[-1]:.1f} s, recovery {recoveries[-1]:.1f} s", flush=True)
            llamas.delete_namespace()
    finally:
        operator.stop()
    print(f"detection median {statistics.median(detections):.1f} s over {len(detections)} runs (target < 5 s)")
    print(f"recovery  median {statistics.median(recoveries):.1f} s over {len(recoveries)} runs (target < 60 s)")
    print("KubePodCrashLooping (kube-prometheus) waits 15 min = 900 s before it fires")
    return 0


if __name__ == "__main__":
    sys.exit(main())
