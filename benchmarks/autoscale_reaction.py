"""Autoscaling (issue #22): scale-up reaction time under real load, against KEDA's polling interval, in one run.

    python benchmarks/autoscale_reaction.py [--runs 3] [--intervals 5s 30s] [--json PATH]

A real vLLM CPU engine (the tiny Llama-4 of tests/engine, --max-num-seqs 1) stands in for the LlamaDeployment's
first pod: Prometheus scrapes it with that pod's labels. For each polling interval, a LlamaDeployment with
spec.autoscaling (RequestsWaiting, target 1 per replica, 1 to 3 replicas, scale-up stabilization 0 s, scale-down
cooldown 10 s) is made by a real operator process, and each run starts 8 clients sending completions back to back
(one runs, the rest wait in vLLM's queue), then measures from the load's start:
- signal: the ScaledObject's query answers >= 2 in Prometheus (the scrape);
- scaled: spec.replicas > 1, written by the HPA through the scale subresource (KEDA's metrics adapter answering the
  HPA of the kube-controller-manager);
- serving: status.readyReplicas > 1 (the operator's Deployment and the KWOK pods).
Then the load stops and the run waits for one replica again. KEDA's pollingInterval paces its own loop (activation,
0 <-> 1); the HPA reads the metric through KEDA's adapter on its own sync period (5 s in the sandbox), so 1 -> N is
expected not to follow the polling interval: the figures say whether it does. Needs a running sandbox with KEDA.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.conftest import Sandbox, make_namespace, running_sandbox, wait_for
from tests.integration.llamas import Llamas, llama
from tests.integration.operator_process import OperatorProcess
from tests.integration.vllm_engine import Load, Vllm, answer, scrape_as

from benchmarks import report
from llamaops_sandbox import config

NAME = "reactive"
HPA_SYNC = "5s"  # the sandbox's --horizontal-pod-autoscaler-sync-period
LOAD_CLIENTS = 8


def deployment(namespace: str, polling: str) -> dict[str, Any]:
    body = llama(NAME, namespace)
    body["spec"]["engine"].update(maxModelLen=8192, tensorParallelSize=2)
    body["spec"]["resources"]["gpuProduct"] = "NVIDIA-H200"
    body["spec"]["autoscaling"] = {
        "minReplicas": 1,
        "maxReplicas": 3,
        "metric": "RequestsWaiting",
        "target": 1,
        "pollingInterval": polling,
        "scaleUpStabilization": "0s",
        "scaleDownCooldown": "10s",
    }
    return body


def one_run(sandbox: Sandbox, llamas: Llamas, engine: Vllm, query: str) -> tuple[float, float, float]:
    began = time.monotonic()
    load = Load(engine, LOAD_CLIENTS)
    try:
        wait_for("the queue in Prometheus", lambda: (answer(sandbox, query) or 0) >= 2, timeout=120, interval=0.2)
        signal = time.monotonic() - began
        wait_for("scaled out", lambda: llamas.get(NAME)["spec"]["replicas"] > 1, timeout=180, interval=0.2)
        scaled = time.monotonic() - began
        wait_for("serving", lambda: (llamas.status(NAME).get("readyReplicas") or 0) > 1, timeout=120, interval=0.2)
        serving = time.monotonic() - began
    finally:
        load.stop()
    wait_for("the queue drained", lambda: answer(sandbox, query) == 0.0, timeout=120)
    wait_for("back to 1", lambda: llamas.status(NAME).get("replicas") == 1, timeout=180)
    return signal, scaled, serving


def measure(sandbox: Sandbox, engine: Vllm, file_sd: Path, polling: str, count: int) -> dict[str, list[float]]:
    """``count`` runs on a fresh LlamaDeployment whose ScaledObject polls every ``polling``."""
    llamas = Llamas(sandbox, make_namespace(sandbox, "bench-autoscale"))
    target = None
    try:
        llamas.create(deployment(llamas.namespace, polling))
        wait_for("one ready", lambda: llamas.status(NAME).get("readyReplicas") == 1, timeout=180)
        query = wait_for("the query", lambda: (llamas.status(NAME).get("autoscaling") or {}).get("query"))
        (pod,) = [p.metadata.name for p in llamas.pods(NAME) if not p.metadata.deletion_timestamp]
        target = scrape_as(file_sd, f"bench-autoscale-{llamas.namespace}", [(engine, llamas.namespace, pod)])
        wait_for("the engine scraped", lambda: answer(sandbox, query) == 0.0, timeout=60)
        runs: dict[str, list[float]] = {"signal": [], "scaled": [], "serving": []}
        for run in range(count):
            signal, scaled, serving = one_run(sandbox, llamas, engine, query)
            runs["signal"].append(signal)
            runs["scaled"].append(scaled)
            runs["serving"].append(serving)
            print(
                f"pollingInterval {polling} run {run + 1}: queue seen {signal:.1f} s, "
                f"spec.replicas > 1 at {scaled:.1f} s, a second replica ready at {serving:.1f} s",
                flush=True,
            )
        return runs
    finally:
        if target is not None:
            target.unlink(missing_ok=True)
        llamas.delete_namespace()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--intervals", nargs="+", default=["5s", "30s"], help="KEDA pollingInterval values")
    parser.add_argument("--json", type=Path, help="also write the figures here (benchmarks/report.py)")
    args = parser.parse_args()
    sandbox = running_sandbox()
    if sandbox is None:
        print("no sandbox running: llamaops-sandbox up", file=sys.stderr)
        return 2
    work = Path(sandbox.layout.run) / "bench-autoscale"
    work.mkdir(parents=True, exist_ok=True)
    print("starting vLLM (CPU, tiny Llama-4, --max-num-seqs 1) ...", flush=True)
    engine = Vllm(work, max_num_seqs=1)
    file_sd = config.file_sd_dir(sandbox.layout)
    file_sd.mkdir(parents=True, exist_ok=True)
    env = {"LLAMAOPS_PROMETHEUS_URL": sandbox.prometheus_url}
    operator = OperatorProcess(sandbox, "bench-autoscale-*", "bench-autoscale", env=env).start()
    figures: dict[str, dict[str, list[float]]] = {}
    try:
        for polling in args.intervals:
            figures[polling] = measure(sandbox, engine, file_sd, polling, args.runs)
    finally:
        operator.stop()
        engine.stop()
    out: list[report.Figure] = []
    for polling, runs in figures.items():
        scaled = statistics.median(runs["scaled"])
        reaction = statistics.median([s - q for s, q in zip(runs["scaled"], runs["signal"], strict=True)])
        print(
            f"pollingInterval {polling}: load to scaled median {scaled:.1f} s; queue seen to scaled median "
            f"{reaction:.1f} s (HPA sync {HPA_SYNC}, Prometheus scrape {config.SCRAPE_INTERVAL})"
        )
        out.append(
            report.Figure(
                f"load start to spec.replicas > 1, pollingInterval {polling}, median of {len(runs['scaled'])}",
                round(scaled, 1),
                "s",
                "",
                None,
                f"queue seen in Prometheus at {statistics.median(runs['signal']):.1f} s; HPA sync {HPA_SYNC}",
            )
        )
        out.append(
            report.Figure(
                f"queue seen to spec.replicas > 1, pollingInterval {polling}",
                round(reaction, 1),
                "s",
                f"<= HPA sync {HPA_SYNC} + one query",
                None,
                f"a second replica ready at {statistics.median(runs['serving']):.1f} s from load start",
            )
        )
    report.write(args.json, "autoscale_reaction", out, runs=args.runs, samples=figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
