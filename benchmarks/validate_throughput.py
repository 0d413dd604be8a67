"""Validation throughput on one CPU core: specs per second and per-spec latency (targets: >= 5,000/s, p99 < 2 ms).

    python benchmarks/validate_throughput.py [--seconds S] [--core N] [--json PATH]

The workload cycles through the examples (valid and refused: Llama-4 MoE with known issues, a dense model, an
inline config.json) plus schema-invalid variants, i.e. what `llama-operator validate` and the admission webhook
see. Each call is the full pure path: pydantic parsing, catalog lookups, parallelism, known issues, the memory
plan and the effective arguments. The process is pinned to one core; the knowledge bundle is loaded once, as in
the CLI and the operator. The baseline, measured in the same run for as long on the same workload: pydantic
parsing alone (LlamaDeployment.model_validate), the floor under any validation that starts from the schema.
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydantic
import yaml

from llama_operator.api import LlamaDeployment
from llama_operator.knowledge import load_knowledge
from llama_operator.planning import validate

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(ROOT))

from benchmarks import report  # noqa: E402 - needs the repository root on sys.path

TARGET_SPECS_PER_S = 5000
TARGET_P99_MS = 2.0


def workload() -> list[Any]:
    documents = [
        document
        for path in sorted(EXAMPLES.glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8"))
        if document
    ]
    broken = copy.deepcopy(documents[0])
    broken["spec"]["engine"]["tensorParallelSize"] = 0
    broken["spec"]["engine"]["gpuMemoryUtilization"] = 2
    broken["spec"]["extraField"] = True
    return [*documents, broken, ["not", "a", "mapping"]]


def parse_only(document: Any) -> object:
    """The baseline: the schema alone, as pydantic parses a LlamaDeployment (refusals included)."""
    try:
        return LlamaDeployment.model_validate(document)
    except pydantic.ValidationError as error:
        return error


def measure(call: Callable[[Any], object], specs: list[Any], seconds: float) -> tuple[list[int], float, float]:
    """Per-call nanoseconds (sorted) over ``seconds`` of cycling through ``specs``, the elapsed seconds and the
    process's CPU seconds over them (on a shared machine the gap is time the core was lent to others)."""
    for document in specs * 200:  # warm caches (version parsing, pydantic) before measuring
        call(document)
    gc.collect()
    timings: list[int] = []
    clock = time.perf_counter_ns
    deadline = clock() + int(seconds * 1e9)
    cpu = time.process_time()
    start = clock()
    while clock() < deadline:
        for document in specs:
            begin = clock()
            call(document)
            timings.append(clock() - begin)
    elapsed = (clock() - start) / 1e9
    cpu = time.process_time() - cpu
    timings.sort()
    return timings, elapsed, cpu


def quantile_ms(timings: list[int], q: float) -> float:
    return timings[min(len(timings) - 1, int(len(timings) * q))] / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time of each path (default 5)")
    parser.add_argument("--core", type=int, default=None, help="CPU core to pin to (default: the first allowed)")
    parser.add_argument("--json", type=Path, help="also write the figures here (benchmarks/report.py)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        core = args.core if args.core is not None else min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
    knowledge = load_knowledge()
    specs = workload()
    timings, elapsed, cpu = measure(lambda document: validate(document, knowledge), specs, args.seconds)
    throughput = len(timings) / elapsed
    p50, p99 = quantile_ms(timings, 0.5), quantile_ms(timings, 0.99)
    print(f"specs validated: {len(timings):,} in {elapsed:.2f} s on one core ({len(specs)} distinct specs)")
    print(f"throughput:      {throughput:,.0f} specs/s  (target >= 5,000)")
    print(f"latency p50:     {p50:.3f} ms")
    print(f"latency p99:     {p99:.3f} ms  (target < 2 ms)")
    print(f"latency max:     {timings[-1] / 1e6:.3f} ms; mean {statistics.fmean(timings) / 1e6:.3f} ms")
    print(f"CPU time:        {cpu:.2f} s of {elapsed:.2f} s ({len(timings) / cpu:,.0f} specs per CPU second)")

    parsed, parse_elapsed, _ = measure(parse_only, specs, args.seconds)
    parse_throughput = len(parsed) / parse_elapsed
    parse_p50, parse_p99 = quantile_ms(parsed, 0.5), quantile_ms(parsed, 0.99)
    print(
        f"baseline, pydantic parsing alone: {parse_throughput:,.0f} specs/s, p50 {parse_p50:.3f} ms, "
        f"p99 {parse_p99:.3f} ms (validate() costs {parse_throughput / throughput:.1f}x parsing)"
    )
    baseline = "pydantic parsing alone"
    report.write(
        args.json,
        "validate_throughput",
        [
            report.Figure(
                "validate() throughput, one core",
                round(throughput),
                "specs/s",
                f">= {TARGET_SPECS_PER_S:,} specs/s",
                throughput >= TARGET_SPECS_PER_S,
                f"{baseline} {parse_throughput:,.0f} specs/s",
            ),
            report.Figure(
                "validate() latency p99",
                round(p99, 3),
                "ms",
                f"< {TARGET_P99_MS:g} ms",
                p99 < TARGET_P99_MS,
                f"{baseline} {parse_p99:.3f} ms",
            ),
            report.Figure("validate() latency p50", round(p50, 3), "ms", baseline=f"{baseline} {parse_p50:.3f} ms"),
        ],
        seconds=args.seconds,
        cpu_seconds=round(cpu, 3),
        specs=len(timings),
        distinct_specs=len(specs),
        parsed_specs=len(parsed),
    )


if __name__ == "__main__":
    main()
