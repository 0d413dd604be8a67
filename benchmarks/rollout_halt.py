"""Progressive rollout (issue #22): time from the canary's crash to the halted rollout, median over N runs.

    python benchmarks/rollout_halt.py [--runs 3] [--json PATH]

Each run: a 4-replica Llama-3.1-8B LlamaDeployment on vLLM 0.31.0 (stability window 10 s) is moved to vLLM 0.32.0,
whose pods crash 2 s after start (KWOK crash stage, only while the new image runs). A real operator process starts
a canary of one replica, sees it crash and halts the rollout. Crash to halt is the operator's own
llamaops_rollout_halt_seconds histogram (the canary's first crash, `finishedAt`, to the halt; both whole seconds, so
good to about 1 s); restored is the wall time from the spec change until all four replicas serve the previous
version again; the replicas that ran the new version are counted from the pods seen. Target: crash to halt < 5 s,
one replica (the step) on the crashing version. Needs a running sandbox.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.conftest import make_namespace, running_sandbox, wait_for
from tests.integration.fake_crash import crash
from tests.integration.llamas import Llamas, example
from tests.integration.operator_process import OperatorProcess

from benchmarks import report
from benchmarks.crashloop_times import histogram_sum

NAME, OLD, NEW, REPLICAS = "llama31-8b", "0.31.0", "0.32.0", 4
TARGET_HALT_S = 5.0


def restored(llamas: Llamas) -> bool:
    pods = [p for p in llamas.pods(NAME) if not p.metadata.deletion_timestamp]
    images = {p.spec.containers[0].image for p in pods}
    ready = llamas.status(NAME).get("readyReplicas") == REPLICAS
    return ready and len(pods) == REPLICAS and images == {f"ghcr.io/llamaops/vllm:{OLD}-llamaops"}


def one_run(operator: OperatorProcess, llamas: Llamas) -> tuple[float, float, int]:
    body = example("llama31-8b-h100.yaml", llamas.namespace)
    body["spec"].update(replicas=REPLICAS, rollout={"stabilityWindow": "10s"})
    body["spec"]["engine"]["vllmVersion"] = OLD
    llamas.create(body)
    wait_for("4 ready", lambda: llamas.status(NAME).get("readyReplicas") == REPLICAS, timeout=180)
    before = operator.metrics()
    on_new: set[str] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.2):
            on_new.update(p.metadata.name for p in llamas.pods(NAME) if f"vllm:{NEW}" in p.spec.containers[0].image)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    began = time.monotonic()
    annotations = crash("segfault", when=f"vllm:{NEW}", message="Segmentation fault")
    llamas.patch_spec(NAME, {"engine": {"vllmVersion": NEW}, "podMetadata": {"annotations": annotations}})
    wait_for("halted", lambda: (llamas.status(NAME).get("rollout") or {}).get("phase") == "Halted", timeout=180)
    wait_for("restored", lambda: restored(llamas), timeout=180, interval=0.2)
    restored_s = time.monotonic() - began
    stop.set()
    watcher.join(timeout=5)
    (s0, c0), (s1, c1) = (histogram_sum(m, "llamaops_rollout_halt_seconds") for m in (before, operator.metrics()))
    if c1 <= c0:
        raise SystemExit("the rollout did not halt")
    return (s1 - s0) / (c1 - c0), restored_s, len(on_new)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here (benchmarks/report.py)")
    args = parser.parse_args()
    sandbox = running_sandbox()
    if sandbox is None:
        print("no sandbox running: llamaops-sandbox up", file=sys.stderr)
        return 2
    operator = OperatorProcess(sandbox, "bench-rollout-*", "bench-rollout").start()
    halts, restores, touched = [], [], []
    try:
        for run in range(args.runs):
            llamas = Llamas(sandbox, make_namespace(sandbox, "bench-rollout"))
            try:
                halt, restore, on_new = one_run(operator, llamas)
            finally:
                llamas.delete_namespace()
            halts.append(halt)
            restores.append(restore)
            touched.append(on_new)
            print(f"run {run + 1}: crash to halt {halt:.0f} s, restored {restore:.1f} s, {on_new} on the new version")
    finally:
        operator.stop()
    halt, restore = statistics.median(halts), statistics.median(restores)
    print(f"crash to halted rollout median {halt:.1f} s over {len(halts)} runs (target < {TARGET_HALT_S:g} s)")
    baseline = "AllAtOnce: the crash-loop watch repairs after the fact (crashloop_times)"
    report.write(
        args.json,
        "rollout_halt",
        [
            report.Figure(
                f"crash to halted rollout, median of {len(halts)} runs",
                round(halt, 1),
                "s",
                f"< {TARGET_HALT_S:g} s",
                halt < TARGET_HALT_S,
                baseline,
            ),
            report.Figure(
                f"spec change to 4 replicas serving the previous version, median of {len(restores)} runs",
                round(restore, 1),
                "s",
                "",
                None,
                "the canary's start, crash and removal, and the stable replica's return",
            ),
            report.Figure(
                "replicas that ran the crashing version (most in a run)",
                max(touched),
                "",
                "1 (the step)",
                max(touched) <= 1,
                "AllAtOnce replaces replicas until the Deployment's update stalls",
            ),
        ],
        runs=args.runs,
        halts=[round(h, 2) for h in halts],
        restores=[round(r, 2) for r in restores],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
