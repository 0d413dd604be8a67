"""Time to Available and crash-to-recovered on a real engine (the sandbox's real node), with the engine's own cold
start measured in the same run as the baseline.

    python benchmarks/realnode.py [--runs 1] [--json PATH]

Needs `llamaops-sandbox up --real-node` and `scripts/images-build.sh --registry "$LLAMAOPS_REGISTRY"` (what
scripts/test.sh's real-node tier does). The chart's operator is installed once; each run, in a fresh namespace, is
the mission chain of tests/realnode: the tiny Llama-4 on the unpatched vLLM CPU image, an out-of-vocabulary request
that kills its engine, the operator's switch to the patched image.

Figures per run (wall clock on this machine; pod states are watched every 0.2 s, /health and requests polled
every 0.2 s):
- available_s: LlamaDeployment created -> its Available condition True.
- engine_start_s (baseline): the serving container seen running -> vLLM's own /health answers 200 on the pod's
  address. Measured for the first pod (unpatched) and for the repaired pod (patched).
- detection_s: the crashing request's answer -> the operator's classified crash in status.
- recovery_s: the crashing request's answer -> the same request answered 400 through the Service (only the patched
  engine's guard answers it so; an unguarded engine would die again).
- overhead_s = recovery_s - engine_start_s of the repaired pod: what the operator, the kubelet and the Deployment
  add to one engine start. Target: < 10 s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kubernetes import client, config
from tests.integration.conftest import make_namespace
from tests.realnode import chain
from tests.realnode.conftest import GROUP, PLURAL, VERSION, RealSandbox, model_volume, write_tiny_model

from benchmarks import report
from llamaops_sandbox import cluster
from llamaops_sandbox.layout import Layout, default_cache

TARGET_OVERHEAD_S = 10.0
TIMEOUT_S = 900.0
POLL_S = 0.2


class PodClock:
    """Per pod of the deployment: when its container was first seen running, and when its /health first answered
    200 (monotonic seconds)."""

    def __init__(self, sandbox: RealSandbox, namespace: str) -> None:
        self.core = client.CoreV1Api(sandbox.api)
        self.namespace = namespace
        self.running: dict[str, float] = {}
        self.healthy: dict[str, float] = {}
        self.images: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            pods = self.core.list_namespaced_pod(
                self.namespace, label_selector=f"llamaops.dev/deployment={chain.NAME}"
            ).items
            for pod in pods:
                name = pod.metadata.name
                statuses = pod.status.container_statuses or []
                if name not in self.running and statuses and statuses[0].state.running is not None:
                    self.running[name] = time.monotonic()
                    self.images[name] = pod.spec.containers[0].image
                waiting = name in self.running and name not in self.healthy and pod.status.pod_ip
                if waiting and chain.health(pod.status.pod_ip) == 200:
                    self.healthy[name] = time.monotonic()
            time.sleep(POLL_S)

    def engine_start(self, image: str) -> float:
        starts = [self.healthy[p] - self.running[p] for p in self.healthy if self.images.get(p) == image]
        if not starts:
            raise SystemExit(f"no pod of {image} became healthy")
        return starts[-1]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def wait(what: str, probe: Any, timeout: float = TIMEOUT_S) -> float:
    """Poll until ``probe()`` is truthy; returns the monotonic time it was."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return time.monotonic()
        time.sleep(POLL_S)
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")


def one_run(sandbox: RealSandbox, model: Path, ns: str) -> dict[str, float]:
    model_volume(sandbox, ns, chain.CLAIM)
    clock = PodClock(sandbox, ns)
    try:
        created = time.monotonic()
        client.CustomObjectsApi(sandbox.api).create_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, chain.llama_body(ns, model)
        )
        unpatched, patched = chain.unpatched_image(sandbox), chain.patched_image(sandbox)
        available = wait("Available", lambda: chain.available_with(chain.read_llama(sandbox, ns), unpatched))
        base = chain.service_url(sandbox, ns)
        code, body = chain.complete(base, chain.GOOD_PROMPT)
        if code != 200:
            raise SystemExit(f"the unpatched engine did not answer: {code} {body}")
        code, body = chain.complete(base, chain.OOV_PROMPT)
        crashed = time.monotonic()

        def classified() -> bool:
            remediation = chain.read_llama(sandbox, ns).get("status", {}).get("remediation") or {}
            return bool((remediation.get("crashLoop") or {}).get("knownIssue") == "out_of_vocab_token_ids")

        detected = wait("the classified crash", classified, timeout=300)
        recovered = wait("the guard's 400", lambda: chain.complete(base, chain.OOV_PROMPT, timeout=5)[0] == 400)
        wait("the patched pod's /health seen", lambda: any(clock.images.get(p) == patched for p in clock.healthy))
        return {
            "available_s": available - created,
            "engine_start_unpatched_s": clock.engine_start(unpatched),
            "detection_s": detected - crashed,
            "recovery_s": recovered - crashed,
            "engine_start_s": clock.engine_start(patched),
            "overhead_s": (recovered - crashed) - clock.engine_start(patched),
        }
    finally:
        clock.stop()
        sandbox.kubectl("delete", "namespace", ns, "--wait=false")
        sandbox.kubectl("delete", "pv", f"{ns}-{chain.CLAIM}", "--ignore-not-found", "--wait=false")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON to PATH")
    args = parser.parse_args()
    layout = Layout(default_cache())
    state = cluster.read_state(layout)
    if state is None or not state.real_node:
        raise SystemExit("needs the sandbox's real node: llamaops-sandbox up --real-node (see e2e/README.md)")
    sandbox = RealSandbox(layout, state, config.new_client_from_config(config_file=str(layout.kubeconfig)))
    model = write_tiny_model(layout)
    namespaces = [make_namespace(sandbox, "bench-realnode") for _ in range(args.runs)]
    release = chain.install_operator(sandbox, namespaces)
    runs = []
    try:
        for index, ns in enumerate(namespaces, 1):
            figures = one_run(sandbox, model, ns)
            runs.append(figures)
            print(f"run {index}: " + ", ".join(f"{k} {v:.1f}" for k, v in figures.items()), flush=True)
    finally:
        chain.uninstall_operator(sandbox, release)
    median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    overhead = max(r["overhead_s"] for r in runs)
    print(
        f"time to Available {median['available_s']:.1f} s (engine start {median['engine_start_unpatched_s']:.1f} s); "
        f"crash -> detected {median['detection_s']:.1f} s; crash -> recovered {median['recovery_s']:.1f} s, "
        f"of which the repaired engine's own start {median['engine_start_s']:.1f} s: overhead max {overhead:.1f} s "
        f"(target < {TARGET_OVERHEAD_S:.0f} s) over {len(runs)} run(s)"
    )
    report.write(
        args.json,
        "realnode",
        [
            report.Figure(
                f"time to Available on the real engine, median of {len(runs)}",
                round(median["available_s"], 1),
                "s",
                baseline=f"engine cold start {median['engine_start_unpatched_s']:.1f} s",
            ),
            report.Figure(
                f"crash to recovered minus one engine start, max of {len(runs)}",
                round(overhead, 1),
                "s",
                f"< {TARGET_OVERHEAD_S:g} s",
                overhead < TARGET_OVERHEAD_S,
                f"recovery {median['recovery_s']:.1f} s, the repaired engine's start {median['engine_start_s']:.1f} s",
            ),
        ],
        runs=runs,
        median=median,
    )
    return 0 if overhead < TARGET_OVERHEAD_S else 1


if __name__ == "__main__":
    sys.exit(main())
