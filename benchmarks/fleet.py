"""Fleet-scale health (issue #21): one crash loop among N healthy LlamaDeployments on many fake nodes.

    python benchmarks/fleet.py [--sizes 10 100 1000] [--nodes 1000] [--trials 10] [--idle 60] [--json PATH]

Runs its own sandbox under a temporary LLAMAOPS_CACHE (binaries shared, like scale.py) with its kube-state-metrics
and Prometheus, and one operator process with LLAMAOPS_PROMETHEUS_URL set. The fleet (Llama-3.1-8B, one H100 each,
in one namespace) grows through --sizes. Before the first and at each size, once every LlamaDeployment is Running
with its lastKnownGood recorded (nothing left to do), an idle window of --idle seconds measures:

* the operator's CPU time over the window (/proc/PID/stat), as a share of one core;
* the Prometheus queries made in it, from Prometheus's own counter (prometheus_http_requests_total of
  /api/v1/query and /api/v1/query_range; nothing else queries this Prometheus), per minute;
* the operator's RSS (and its peak so far).

At the smallest and the largest size, --trials detection trials: one deployment's spec.podMetadata gets the KWOK
crash annotations (tests/integration/fake_crash.py; remediation Off, so it keeps crash-looping rather than being
repaired), which rolls it; its new pod's container runs 2 s and terminates. Detection from pod status is the
operator's llamaops_crash_detection_seconds (that termination's finishedAt to the CrashLoopDetected decision);
from Prometheus, llamaops_crash_loop_seen_seconds{source="Prometheus"} (finishedAt to the operator's batched
kube-state-metrics query showing the loop). Each trial is read from the histograms' sum and count deltas; the
patch is then reverted and the next trial waits for the deployment to run healthy again. finishedAt has whole
seconds, so a detection figure is good to about 1 s (it reads up to 1 s late). Queries per minute are counted over
the trials too.

Baselines, in the same run: detection at the smallest size; queries, CPU and RSS with no LlamaDeployment (N=0)
and at each size. Targets: detection p99 < 5 s from either source at the largest size, queries per minute flat in
N, idle CPU < 3% of one core and RSS < 200 MB at N=1,000. --profile FILE attaches py-spy to the operator for the
largest size's idle window.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import report  # noqa: E402 - needs the repository root on sys.path
from benchmarks.scale import (  # noqa: E402
    cpu_seconds,
    gpu_sandbox,
    link_cache,
    peak_rss_mb,
    start_profiler,
    summarise,
)

TARGET_DETECTION_S = 5.0
TARGET_CPU = 0.03  # of one core
TARGET_RSS_MB = 200.0
STARTUP_S = 20.0
DETECTION = "llamaops_crash_detection_seconds"
SEEN = "llamaops_crash_loop_seen_seconds"
QUERY_HANDLERS = ("/api/v1/query", "/api/v1/query_range")
CRASH_CASE = "embedding_oov"
GROUP, VERSION, PLURAL = "llamaops.dev", "v1alpha1", "llamadeployments"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def histogram(text: str, name: str, **labels: str) -> tuple[float, float] | None:
    """(sum, count) of one histogram series in a /metrics text; None when the operator does not export it."""
    for family in text_string_to_metric_families(text):
        if family.name != name:
            continue
        total = count = None
        for sample in family.samples:
            if any(sample.labels.get(k) != v for k, v in labels.items()):
                continue
            if sample.name == f"{name}_sum":
                total = sample.value
            elif sample.name == f"{name}_count":
                count = sample.value
        return (total or 0.0, count or 0.0)
    return None


def prometheus_queries(prometheus_url: str) -> float:
    """Queries Prometheus has answered since it started (its own counter, every status code)."""
    with urllib.request.urlopen(f"{prometheus_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name == "prometheus_http_requests":
            total += sum(
                s.value
                for s in family.samples
                if s.name == "prometheus_http_requests_total" and s.labels.get("handler") in QUERY_HANDLERS
            )
    return total


@dataclass(frozen=True)
class Idle:
    size: int
    seconds: float
    cpu_s: float
    queries: float
    rss_mb: float
    peak_rss_mb: float

    @property
    def cpu_share(self) -> float:
        return self.cpu_s / self.seconds

    @property
    def queries_per_min(self) -> float:
        return 60 * self.queries / self.seconds


@dataclass(frozen=True)
class Trial:
    size: int
    name: str
    from_pods_s: float  # the CrashLoopDetected decision (status), from pod status
    from_prometheus_s: float  # the batched query's verdict; NaN when the operator has no such path
    source: str  # status.remediation.crashLoop.source
    queries: float
    seconds: float


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile, linear between the closest ranks (the max for q=99 with fewer than 100 values)."""
    ordered = sorted(v for v in values if v == v)
    if not ordered:
        return float("nan")
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--trials", type=int, default=10, help="detection trials at the smallest and largest size")
    parser.add_argument("--idle", type=float, default=60, help="seconds of each idle window")
    parser.add_argument("--timeout", type=float, default=1200, help="for the fleet to converge at one size")
    parser.add_argument("--profile", type=Path, help="py-spy collapsed stacks of the largest size's idle window")
    parser.add_argument("--profile-zero", action="store_true", help="profile the N=0 window instead")
    parser.add_argument("--json", type=Path, help="also write the figures here (benchmarks/report.py)")
    parser.add_argument("--log", type=Path, help="keep the operator's log here")
    args = parser.parse_args()
    sizes = sorted(set(args.sizes))
    began_run = time.monotonic()
    idles: list[Idle] = []
    trials: list[Trial] = []
    during: dict[int, tuple[float, float]] = {}  # size -> (queries, seconds) over its trials
    with tempfile.TemporaryDirectory(prefix="llamaops-fleet-") as tmp:
        link_cache(Path(tmp))
        # Imported after LLAMAOPS_CACHE points at the temporary cache.
        from kubernetes import client
        from tests.integration.conftest import make_namespace, wait_for
        from tests.integration.fake_crash import crash
        from tests.integration.operator_process import OperatorProcess

        from llamaops_sandbox import cluster

        with gpu_sandbox(Path(tmp), args.nodes, "fleet") as sandbox:
            layout = sandbox.layout
            custom = client.CustomObjectsApi(sandbox.api)
            base = yaml.safe_load((ROOT / "examples" / "llama31-8b-h100.yaml").read_text())
            namespace = make_namespace(sandbox, "fleet")
            env = {"LLAMAOPS_PROMETHEUS_URL": sandbox.prometheus_url, "LLAMAOPS_PROMETHEUS_TIMEOUT": "2s"}
            operator = OperatorProcess(sandbox, "fleet-*", "fleet", env=env).start()
            assert operator.proc is not None
            pid = operator.proc.pid

            def listed() -> list[dict[str, Any]]:
                items: list[dict[str, Any]] = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)[
                    "items"
                ]
                return items

            def settled(body: dict[str, Any]) -> bool:
                """Running at its generation with its lastKnownGood recorded and no crash loop: nothing to do."""
                status, generation = body.get("status") or {}, body["metadata"]["generation"]
                return (
                    status.get("phase") == "Running"
                    and status.get("observedGeneration") == generation
                    and (status.get("lastKnownGood") or {}).get("generation") == generation
                    and not (status.get("remediation") or {}).get("crashLoop")
                )

            def grow(size: int) -> None:
                have = len(listed())
                items = []
                for index in range(have, size):
                    body = json.loads(json.dumps(base))
                    body["metadata"] = {"name": f"llama-{index:04d}", "namespace": namespace}
                    items.append(body)
                began, shown = time.monotonic(), [time.monotonic()]
                if items:
                    text = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
                    cluster.kubectl(layout, "apply", "--server-side", "-f", "-", stdin=text)

                def done() -> bool:
                    bodies = listed()
                    ready = sum(1 for b in bodies if settled(b))
                    if time.monotonic() - shown[0] >= 15:
                        shown[0] = time.monotonic()
                        running = sum(1 for b in bodies if (b.get("status") or {}).get("phase") == "Running")
                        print(
                            f"  N={size}: {time.monotonic() - began:6.1f} s: {running} Running, {ready} settled; "
                            f"operator CPU {cpu_seconds(pid):.1f} s, RSS {rss_mb(pid):.0f} MB",
                            flush=True,
                        )
                    return ready >= size

                wait_for(f"{size} LlamaDeployments settled", done, timeout=args.timeout, interval=2)
                print(f"N={size}: settled after {time.monotonic() - began:.1f} s", flush=True)

            def idle_window(size: int, profile: Path | None) -> Idle:
                time.sleep(5)  # the last status writes and Events drain
                profiler = start_profiler(pid, profile) if profile else None
                cpu0, queries0, t0 = cpu_seconds(pid), prometheus_queries(sandbox.prometheus_url), time.monotonic()
                time.sleep(args.idle)
                cpu1, queries1, t1 = cpu_seconds(pid), prometheus_queries(sandbox.prometheus_url), time.monotonic()
                if profiler is not None:
                    profiler.send_signal(2)  # py-spy writes its output on SIGINT
                    profiler.wait(timeout=60)
                idle = Idle(size, t1 - t0, cpu1 - cpu0, queries1 - queries0, rss_mb(pid), peak_rss_mb(pid))
                print(
                    f"N={size} idle {idle.seconds:.0f} s: CPU {100 * idle.cpu_share:.2f}% of one core, "
                    f"{idle.queries_per_min:.1f} Prometheus queries/min, RSS {idle.rss_mb:.0f} MB "
                    f"(peak {idle.peak_rss_mb:.0f} MB)",
                    flush=True,
                )
                return idle

            def patch(name: str, spec: dict[str, Any]) -> None:
                custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, {"spec": spec})

            def trial(size: int, index: int) -> Trial:
                name = f"llama-{index:04d}"
                before = operator.metrics()
                queries0, t0 = prometheus_queries(sandbox.prometheus_url), time.monotonic()
                pods_before = histogram(before, DETECTION) or (0.0, 0.0)
                prom_before = histogram(before, SEEN, source="Prometheus")
                patch(name, {"podMetadata": {"annotations": crash(CRASH_CASE)}, "remediation": {"policy": "Off"}})

                def seen() -> str | None:
                    text = operator.metrics()
                    pods_now = histogram(text, DETECTION) or (0.0, 0.0)
                    prom_now = histogram(text, SEEN, source="Prometheus")
                    prom_done = prom_before is None or (prom_now is not None and prom_now[1] > prom_before[1])
                    return text if pods_now[1] > pods_before[1] and prom_done else None

                after: str = wait_for(f"{name}'s crash loop detected", seen, timeout=90, interval=0.5)
                queries1, t1 = prometheus_queries(sandbox.prometheus_url), time.monotonic()
                pods_after = histogram(after, DETECTION) or (0.0, 0.0)
                prom_after = histogram(after, SEEN, source="Prometheus")
                from_pods = (pods_after[0] - pods_before[0]) / (pods_after[1] - pods_before[1])
                from_prometheus = float("nan")
                if prom_before is not None and prom_after is not None:
                    from_prometheus = (prom_after[0] - prom_before[0]) / (prom_after[1] - prom_before[1])
                body = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
                loop = ((body.get("status") or {}).get("remediation") or {}).get("crashLoop") or {}
                result = Trial(
                    size, name, from_pods, from_prometheus, str(loop.get("source")), queries1 - queries0, t1 - t0
                )
                print(
                    f"N={size} trial {name}: detection from pod status {from_pods:.2f} s (status source "
                    f"{result.source}), from Prometheus {from_prometheus:.2f} s; {result.queries:.0f} queries "
                    f"in {result.seconds:.1f} s",
                    flush=True,
                )
                patch(name, {"podMetadata": None, "remediation": None})
                last: dict[str, Any] = {}

                def healthy() -> bool:
                    last.update(custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name))
                    return settled(last)

                try:
                    wait_for(f"{name} healthy again", healthy, timeout=120, interval=1)
                except BaseException:  # pytest.fail's exception: say what the status was
                    print(f"{name} last seen: {json.dumps(last.get('status'), indent=1)}", flush=True)
                    raise
                return result

            def trials_at(size: int) -> None:
                # Spread over the fleet: a crash of the last-created or the first deployment is not special.
                step = max(1, size // max(1, args.trials))
                queries0, t0 = prometheus_queries(sandbox.prometheus_url), time.monotonic()
                for k in range(args.trials):
                    trials.append(trial(size, (k * step + step // 2) % size))
                during[size] = (prometheus_queries(sandbox.prometheus_url) - queries0, time.monotonic() - t0)

            try:
                print(f"N=0 (operator only), {args.nodes} nodes", flush=True)
                time.sleep(STARTUP_S)  # the operator's first lists and watches are done
                idles.append(idle_window(0, args.profile if args.profile_zero else None))
                for size in sizes:
                    grow(size)
                    largest = size == sizes[-1]
                    idles.append(idle_window(size, args.profile if largest and not args.profile_zero else None))
                    if size in (sizes[0], sizes[-1]):
                        trials_at(size)
            finally:
                operator.stop()
                if args.log:
                    shutil.copyfile(operator.log, args.log)
    figures = _figures(sizes, idles, trials, during)
    elapsed = time.monotonic() - began_run
    print(f"\nfleet benchmark, {args.nodes:,} nodes, sizes {sizes}, {elapsed:.0f} s:")
    for figure in figures:
        mark = {True: "met", False: "MISSED", None: ""}[figure.met]
        target = figure.target or "-"
        print(f"  {figure.name}: {figure.value} {figure.unit} (target {target}) {mark}; {figure.baseline}")
    report.write(
        args.json,
        "fleet",
        figures,
        nodes=args.nodes,
        sizes=sizes,
        idle_s=args.idle,
        idle=[vars(i) for i in idles],
        trials=[vars(t) for t in trials],
        queries_over_trials={str(size): {"queries": q, "seconds": round(t, 1)} for size, (q, t) in during.items()},
    )
    if args.profile:
        summarise(args.profile)
    return 0


def _figures(
    sizes: list[int], idles: list[Idle], trials: list[Trial], during: dict[int, tuple[float, float]]
) -> list[report.Figure]:
    largest, smallest = sizes[-1], sizes[0]
    at = {i.size: i for i in idles}
    top, zero = at[largest], at[0]
    n = f"N={largest:,}"

    def detection(size: int, pick: Callable[[Trial], float]) -> tuple[float, int]:
        values = [pick(t) for t in trials if t.size == size]
        return percentile(values, 99), len(values)

    figures = []
    for source, pick in (
        ("pod status", lambda t: t.from_pods_s),
        ("Prometheus", lambda t: t.from_prometheus_s),
    ):
        p99, count = detection(largest, pick)
        small, small_count = detection(smallest, pick)
        values = [pick(t) for t in trials if t.size == largest]
        median = statistics.median(values) if values else float("nan")
        figures.append(
            report.Figure(
                f"crash-loop detection p99 from {source}, 1 of {n} ({count} trials)",
                round(p99, 1),
                "s",
                f"< {TARGET_DETECTION_S:g} s",
                p99 < TARGET_DETECTION_S if p99 == p99 else False,
                f"median {median:.1f} s; at N={smallest:,}: p99 {small:.1f} s ({small_count} trials)",
            )
        )
    rates = ", ".join(f"N={i.size:,}: {i.queries_per_min:.0f}" for i in idles)
    spread = max(i.queries_per_min for i in idles if i.size) - min(i.queries_per_min for i in idles if i.size)
    crashing = during.get(largest)
    crash_rate = 60 * crashing[0] / crashing[1] if crashing else float("nan")
    flat = spread <= max(2.0, 0.1 * max(i.queries_per_min for i in idles))
    figures.append(
        report.Figure(
            f"Prometheus queries per minute, idle, {n}",
            round(top.queries_per_min, 1),
            "/min",
            "flat in N (one batched query per interval)",
            flat,
            f"{rates} (idle windows); {crash_rate:.0f}/min over the trials at {n} (one deployment crash-looping "
            "at a time)",
        )
    )
    figures.append(
        report.Figure(
            f"operator idle CPU, {n}",
            round(100 * top.cpu_share, 2),
            "% of one core",
            f"< {100 * TARGET_CPU:g}% of one core",
            top.cpu_share < TARGET_CPU,
            "; ".join(f"N={i.size:,}: {100 * i.cpu_share:.2f}%" for i in idles if i.size != largest)
            + f" (same operator, {top.seconds:.0f} s windows)",
        )
    )
    figures.append(
        report.Figure(
            f"operator RSS, idle, {n}",
            round(top.rss_mb),
            "MB",
            f"< {TARGET_RSS_MB:g} MB",
            top.rss_mb < TARGET_RSS_MB,
            f"N=0: {zero.rss_mb:.0f} MB; peak while the fleet grew to {n}: {top.peak_rss_mb:.0f} MB",
        )
    )
    return figures


if __name__ == "__main__":
    sys.exit(main())
