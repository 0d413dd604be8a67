"""Failover time of two operator replicas with kopf peering (docs/ha.md), over N runs.

    python benchmarks/failover.py [--runs 5] [--lifetime 15] [--baseline-runs 1] [--json PATH]

Two `llama-operator run` replicas peer as the chart runs them (tests/integration/ha_pair.py: the chart's peering
CRDs, ClusterKopfPeering and args, with peering.lifetime). Each run stops the active replica, creates a
LlamaDeployment (Llama-3.1-8B, one fake H100) at once, and times from the signal until it is Running, reconciled
by the standby; then a fresh replica joins so two are running again. SIGKILL: the standby waits until the dead
replica's last keep-alive is older than its lifetime. SIGTERM (a rolling update, a drained node): kopf removes its
record on the way out and the standby takes over at once. Target: SIGKILL failover < 30 s. Baseline: SIGKILL with
kopf's default peering lifetime (60 s), what `--peering` alone would give. Needs a running sandbox.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.conftest import Sandbox, running_sandbox
from tests.integration.ha_pair import failover, pair_of_replicas
from tests.integration.llamas import Llamas

TARGET_S = 30.0
KOPF_DEFAULT_LIFETIME_S = 60


def summary(label: str, seconds: list[float]) -> str:
    runs = ", ".join(f"{s:.1f}" for s in seconds)
    return (
        f"{label}: median {statistics.median(seconds):.1f} s, max {max(seconds):.1f} s "
        f"over {len(seconds)} runs ({runs})"
    )


def measure(sandbox: Sandbox, lifetime: int, runs: int, signals: tuple[signal.Signals, ...]) -> dict[str, list[float]]:
    """Failover seconds per signal over ``runs`` runs, the chart's peering with ``peering.lifetime=lifetime``."""
    results: dict[str, list[float]] = {sig.name: [] for sig in signals}
    with pair_of_replicas(sandbox, [f"peering.lifetime={lifetime}"]) as pair:
        pair.start()
        for run in range(runs):
            for sig in signals:
                pair.start()  # two live replicas again
                name = f"after-{sig.name.lower()}-{run}"
                took = failover(sandbox, pair, name, sig=sig)
                results[sig.name].append(took.seconds)
                print(
                    f"lifetime {lifetime} s, run {run + 1}/{runs} {sig.name}: {took.seconds:.1f} s "
                    f"(last keep-alive {took.record_age_s:.1f} s old at the signal)",
                    flush=True,
                )
                Llamas(sandbox, pair.namespace).delete(name)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--lifetime", type=int, default=15, help="the chart's peering.lifetime (seconds)")
    parser.add_argument("--baseline-runs", type=int, default=1, help="SIGKILL runs at kopf's default lifetime")
    parser.add_argument("--json", type=Path, help="also write the figures here (benchmarks/report.py)")
    args = parser.parse_args()
    sandbox = running_sandbox()
    if sandbox is None:
        print("no sandbox running: llamaops-sandbox up", file=sys.stderr)
        return 2
    results = measure(sandbox, args.lifetime, args.runs, (signal.SIGKILL, signal.SIGTERM))
    baseline = measure(sandbox, KOPF_DEFAULT_LIFETIME_S, args.baseline_runs, (signal.SIGKILL,))["SIGKILL"]
    print(f"from the signal to a new LlamaDeployment Running on the standby; peering lifetime {args.lifetime} s")
    for label, seconds in results.items():
        print(summary(label, seconds))
    if baseline:
        print(summary(f"SIGKILL at kopf's default lifetime {KOPF_DEFAULT_LIFETIME_S} s", baseline))
    kill, term = results["SIGKILL"], results["SIGTERM"]
    worst = max(kill)
    print(f"target: SIGKILL failover < {TARGET_S:.0f} s: {'met' if worst < TARGET_S else 'MISSED'} (max {worst:.1f} s)")
    if args.json is not None:
        from benchmarks import report

        default = f"kopf's default lifetime {KOPF_DEFAULT_LIFETIME_S} s: max {max(baseline):.1f} s" if baseline else ""
        report.write(
            args.json,
            "failover",
            [
                report.Figure(
                    f"SIGKILL failover, max of {len(kill)} runs",
                    round(worst, 1),
                    "s",
                    f"< {TARGET_S:g} s",
                    worst < TARGET_S,
                    default,
                ),
                report.Figure(f"SIGKILL failover, median of {len(kill)} runs", round(statistics.median(kill), 1), "s"),
                report.Figure(f"SIGTERM handover, median of {len(term)} runs", round(statistics.median(term), 1), "s"),
            ],
            lifetime_s=args.lifetime,
            runs=args.runs,
            sigkill=[round(s, 2) for s in kill],
            sigterm=[round(s, 2) for s in term],
            baseline_sigkill=[round(s, 2) for s in baseline],
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
