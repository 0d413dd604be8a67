"""Validation throughput on one CPU core: specs per second and per-spec latency (targets: >= 5,000/s, p99 < 2 ms).

    python benchmarks/validate_throughput.py [--seconds S] [--core N]

The workload cycles through the examples (valid and refused: Llama-4 MoE with known issues, a dense model, an
inline config.json) plus schema-invalid variants, i.e. what `llama-operator validate` and the admission webhook
see. Each call is the full pure path: pydantic parsing, catalog lookups, parallelism, known issues, the memory
plan and the effective arguments. The process is pinned to one core; the knowledge bundle is loaded once, as in
the CLI and the operator.
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import statistics
import time
from pathlib import Path
from typing import Any

import yaml

from llama_operator.knowledge import load_knowledge
from llama_operator.planning import validate

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time (default 5)")
    parser.add_argument("--core", type=int, default=None, help="CPU core to pin to (default: the first allowed)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        core = args.core if args.core is not None else min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
    knowledge = load_knowledge()
    specs = workload()
    for document in specs * 200:  # warm caches (version parsing, pydantic) before measuring
        validate(document, knowledge)
    gc.collect()
    timings: list[int] = []
    clock = time.perf_counter_ns
    deadline = clock() + int(args.seconds * 1e9)
    start = clock()
    while clock() < deadline:
        for document in specs:
            begin = clock()
            validate(document, knowledge)
            timings.append(clock() - begin)
    elapsed = (clock() - start) / 1e9
    timings.sort()
    p50 = timings[len(timings) // 2] / 1e6
    p99 = timings[int(len(timings) * 0.99)] / 1e6
    print(f"specs validated: {len(timings):,} in {elapsed:.2f} s on one core ({len(specs)} distinct specs)")
    print(f"throughput:      {len(timings) / elapsed:,.0f} specs/s  (target >= 5,000)")
    print(f"latency p50:     {p50:.3f} ms")
    print(f"latency p99:     {p99:.3f} ms  (target < 2 ms)")
    print(f"latency max:     {timings[-1] / 1e6:.3f} ms; mean {statistics.fmean(timings) / 1e6:.3f} ms")


if __name__ == "__main__":
    main()
