"""`llama-operator validate` end to end over one file of 5,000 manifests, against parsing that file alone with
PyYAML's C loader (targets: >= 3,000 manifests/s, at most 3x the C loader's time; issue #21).

    python benchmarks/validate_cli.py [--manifests N] [--runs N] [--core N] [--json PATH]

The file holds the examples in turn (valid and refused: Llama-4 MoE with known issues, dense models, an inline
config.json, a multi-node replica), comments included, each under its own metadata.name: a fleet's GitOps
repository. Each run starts the real console script as a subprocess (process start, imports, reading, validating
and printing the table, stdout to /dev/null) and, in the same run, parses the same file in this process with
``yaml.load_all(..., Loader=yaml.CSafeLoader)`` (the baseline) and with the pure-Python ``yaml.safe_load_all``
(what the CLI used before); the three take turns, and the figures are medians over the runs, so load drift on a
shared machine hits them alike. CPU seconds are printed beside the wall-clock ones: on a shared machine the core is
lent to other work. The process and its children are pinned to one core.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(ROOT))

from benchmarks import report  # noqa: E402 - needs the repository root on sys.path

TARGET_MANIFESTS_PER_S = 3000
TARGET_RATIO = 3.0
NAME = re.compile(r"^(metadata:\n  name: )(\S+)$", re.MULTILINE)


def manifests(count: int) -> str:
    """``count`` LlamaDeployments in one multi-document YAML text, the examples in turn, each renamed."""
    examples = [path.read_text(encoding="utf-8").strip("\n") for path in sorted(EXAMPLES.glob("*.yaml"))]
    documents = []
    for index in range(count):
        text, renamed = NAME.subn(rf"\g<1>\g<2>-{index:05d}", examples[index % len(examples)], count=1)
        if renamed != 1:
            raise SystemExit(f"an example without metadata.name on its own line: {text[:80]!r}")
        documents.append(text)
    return "---\n" + "\n---\n".join(documents) + "\n"


def console_script() -> list[str]:
    """The installed `llama-operator` beside this interpreter, as a user runs it; else ``python -m``."""
    script = Path(sys.executable).parent / "llama-operator"
    if script.exists():
        return [str(script)]
    found = shutil.which("llama-operator")
    return [found] if found else [sys.executable, "-m", "llama_operator"]


def run_cli(argv: list[str]) -> tuple[float, float, int]:
    """Wall-clock and CPU seconds of one CLI process, and its exit status."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    completed = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if completed.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(argv)} exited {completed.returncode}: {completed.stderr[-2000:]}")
    return wall, cpu, completed.returncode


def run_parse(load: Callable[[str], list[Any]], path: Path) -> tuple[float, float, int]:
    """Wall-clock and CPU seconds of reading and parsing ``path`` in this process, and the documents read. The heap
    is collected first, so the garbage of the previous parse does not slow this one."""
    gc.collect()
    start, cpu = time.perf_counter(), time.process_time()
    documents = load(path.read_text(encoding="utf-8"))
    return time.perf_counter() - start, time.process_time() - cpu, len(documents)


def c_loader(text: str) -> list[Any]:
    return list(yaml.load_all(text, Loader=yaml.CSafeLoader))


def pure_loader(text: str) -> list[Any]:
    return list(yaml.safe_load_all(text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifests", type=int, default=5000, help="LlamaDeployments in the file (default 5,000)")
    parser.add_argument("--runs", type=int, default=5, help="runs of each, medians reported (default 5)")
    parser.add_argument("--core", type=int, default=None, help="CPU core to pin to (default: the first allowed)")
    parser.add_argument("--json", type=Path, help="also write the figures here (benchmarks/report.py)")
    args = parser.parse_args()
    if not getattr(yaml, "__with_libyaml__", False):
        raise SystemExit("this PyYAML has no C loader (yaml.CSafeLoader): nothing to compare with")
    if hasattr(os, "sched_setaffinity"):
        core = args.core if args.core is not None else min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})

    with tempfile.TemporaryDirectory(prefix="validate-cli-") as folder:
        path = Path(folder) / "fleet.yaml"
        path.write_text(manifests(args.manifests), encoding="utf-8")
        size_mb = path.stat().st_size / 1e6
        argv = [*console_script(), "validate", str(path)]
        one = Path(folder) / "one.yaml"
        one.write_text(manifests(1), encoding="utf-8")
        print(f"file: {args.manifests:,} manifests, {size_mb:.1f} MB; command: llama-operator validate FILE")
        run_cli(argv)  # warm the page cache and the interpreter's .pyc files
        cli, start, c, pure = [], [], [], []
        statuses = set()
        for number in range(1, args.runs + 1):
            wall, cpu, status = run_cli(argv)
            cli.append((wall, cpu))
            statuses.add(status)
            start.append(run_cli([*console_script(), "validate", str(one)])[:2])
            parsed = run_parse(c_loader, path)
            c.append(parsed[:2])
            if parsed[2] != args.manifests:
                raise SystemExit(f"the C loader read {parsed[2]} documents, not {args.manifests}")
            pure.append(run_parse(pure_loader, path)[:2])
            print(
                f"run {number}: CLI {wall:.2f} s (CPU {cpu:.2f} s, exit {status}); one manifest {start[-1][0]:.2f} s; "
                f"C loader {c[-1][0]:.3f} s; pure loader {pure[-1][0]:.2f} s",
                flush=True,
            )

    def median(samples: list[tuple[float, float]], which: int = 0) -> float:
        return statistics.median(sample[which] for sample in samples)

    cli_s, cli_cpu, c_s, c_cpu, pure_s = median(cli), median(cli, 1), median(c), median(c, 1), median(pure)
    start_s = median(start)
    throughput, c_throughput = args.manifests / cli_s, args.manifests / c_s
    pure_throughput = args.manifests / pure_s
    ratio, cpu_ratio = cli_s / c_s, cli_cpu / c_cpu
    print(f"CLI end to end:      {throughput:,.0f} manifests/s ({cli_s:.2f} s; target >= {TARGET_MANIFESTS_PER_S:,})")
    print(f"C loader alone:      {c_throughput:,.0f} manifests/s ({c_s:.3f} s)")
    print(f"ratio:               {ratio:.2f}x the C loader's time (target <= {TARGET_RATIO:g}x); CPU {cpu_ratio:.2f}x")
    print(f"pure loader alone:   {pure_throughput:,.0f} manifests/s ({pure_s:.2f} s)")
    print(f"one-manifest CLI:    {start_s:.2f} s (process start, imports, knowledge)")
    print(f"CPU time:            CLI {cli_cpu:.2f} s, C loader {c_cpu:.3f} s (medians)")
    cli_best, c_best = min(wall for wall, _ in cli), min(wall for wall, _ in c)
    print(f"fastest runs:        CLI {cli_best:.2f} s, C loader {c_best:.3f} s: {cli_best / c_best:.2f}x")
    report.write(
        args.json,
        "validate_cli",
        [
            report.Figure(
                f"validate CLI end to end, {args.manifests:,} manifests",
                round(throughput),
                "manifests/s",
                f">= {TARGET_MANIFESTS_PER_S:,} manifests/s",
                throughput >= TARGET_MANIFESTS_PER_S,
                f"C loader alone {c_throughput:,.0f} manifests/s",
            ),
            report.Figure(
                "CLI time / C loader parse time",
                round(ratio, 2),
                "x",
                f"<= {TARGET_RATIO:g}x",
                ratio <= TARGET_RATIO,
                f"C loader alone {c_s:.3f} s, CLI {cli_s:.2f} s",
            ),
            report.Figure(
                "CLI CPU time / C loader CPU time", round(cpu_ratio, 2), "x", baseline=f"C loader {c_cpu:.3f} s CPU"
            ),
            report.Figure(
                "validate CLI on one manifest (start-up)", round(start_s, 2), "s", baseline="same process, one document"
            ),
            report.Figure(
                "pure-Python loader alone",
                round(pure_throughput),
                "manifests/s",
                baseline=f"C loader alone {c_throughput:,.0f} manifests/s",
            ),
        ],
        manifests=args.manifests,
        file_mb=round(size_mb, 2),
        runs=args.runs,
        exit_status=sorted(statuses),
        cli_seconds=[round(wall, 3) for wall, _ in cli],
        cli_cpu_seconds=[round(cpu, 3) for _, cpu in cli],
        c_loader_seconds=[round(wall, 4) for wall, _ in c],
        pure_loader_seconds=[round(wall, 3) for wall, _ in pure],
        one_manifest_seconds=[round(wall, 3) for wall, _ in start],
        ratio_of_fastest=round(cli_best / c_best, 2),
    )


if __name__ == "__main__":
    main()
