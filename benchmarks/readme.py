"""benchmarks/README.md, rendered from its template and the runs recorded under benchmarks/results/.

A run is a directory: ``run.json`` (when, which machine, quick or not, each benchmark invocation and how it ended,
written by run_all.py) and one JSON per invocation that wrote figures (benchmarks/report.py's format). The
template holds the prose; ``{{summary}}`` becomes the table of the latest figures and ``{{history NAME}}`` the
history of one benchmark over every run. Everything here is pure except ``load_runs``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.report import Figure

RUN_FILE = "run.json"
PLACEHOLDER = re.compile(r"\{\{ *(summary|history +([a-z0-9_]+)) *\}\}")
MARKS = {True: "✓", False: "✗", None: ""}


@dataclasses.dataclass(frozen=True)
class Result:
    benchmark: str
    figures: list[Figure]
    context: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Failure:
    benchmark: str
    reason: str  # e.g. "exit 1", "timed out after 600 s", "no figures written"
    log: str  # the log's path relative to the results directory, or empty
    load_at_start: float | None = None


@dataclasses.dataclass(frozen=True)
class Run:
    id: str  # the directory's name
    started: str  # ISO 8601 in UTC ("2026-11-24T03:12:05Z"), or only a date for hand-recorded figures
    machine: dict[str, Any]
    quick: bool
    hand_recorded: bool
    results: list[Result]
    failures: list[Failure]

    def benchmarks(self) -> list[str]:
        return [r.benchmark for r in self.results] + [f.benchmark for f in self.failures]


def parse_run(run_id: str, run: dict[str, Any], results: list[dict[str, Any]]) -> Run:
    """A Run from run.json's document and the result documents, in file order."""
    failures = [
        Failure(i["benchmark"], i["error"], i.get("log", ""), i.get("load_at_start"))
        for i in run.get("invocations", [])
        if i.get("error")
    ]
    return Run(
        run_id,
        str(run["started"]),
        dict(run.get("machine", {})),
        bool(run.get("quick", False)),
        bool(run.get("hand_recorded", False)),
        [Result(d["benchmark"], [Figure(**f) for f in d["figures"]], dict(d.get("context", {}))) for d in results],
        failures,
    )


def load_runs(results_dir: Path) -> list[Run]:
    """Every run under ``results_dir`` (directories with a run.json), oldest first."""
    runs = []
    for run_file in sorted(results_dir.glob(f"*/{RUN_FILE}")):
        documents = [
            json.loads(path.read_text(encoding="utf-8"))
            for path in sorted(run_file.parent.glob("*.json"))
            if path.name != RUN_FILE
        ]
        runs.append(parse_run(run_file.parent.name, json.loads(run_file.read_text(encoding="utf-8")), documents))
    return ordered(runs)


def ordered(runs: list[Run]) -> list[Run]:
    """Oldest first: by start time (a bare date sorts before any time of that day), then by directory name."""
    return sorted(runs, key=lambda run: (run.started, run.id))


def format_value(value: float, unit: str) -> str:
    if value != value:  # NaN: the benchmark could not compute it
        return "n/a"
    text = f"{value:,}"
    text = text.removesuffix(".0")
    if not unit:
        return text
    return f"{text}{unit}" if unit == "x" else f"{text} {unit}"


def format_date(run: Run) -> str:
    date = run.started.replace("T", " ")
    if len(date) > 10:
        date = date[:16] + " UTC"
    notes = [note for note, flag in (("hand-recorded", run.hand_recorded), ("quick", run.quick)) if flag]
    return f"{date} ({', '.join(notes)})" if notes else date


def describe_machine(machine: dict[str, Any], load: float | None = None) -> str:
    """``Intel(R) Xeon(R) Processor, 2 cores, 23.5 GiB, load 4.2``; a hand-written description as it is."""
    if "description" in machine:
        return str(machine["description"])
    parts = [str(machine.get("cpu", "unknown CPU"))]
    if "cores" in machine:
        parts.append(f"{machine['cores']} cores")
    if "memory_gib" in machine:
        parts.append(f"{machine['memory_gib']:g} GiB")
    load = load if load is not None else machine.get("load_at_start")
    if load is not None:
        parts.append(f"load {load:.1f}")
    return ", ".join(parts)


def result_machine(run: Run, result: Result) -> str:
    if "machine" in result.context:  # hand-recorded figures name their own conditions
        return str(result.context["machine"])
    return describe_machine(run.machine, result.context.get("load_at_start"))


def latest_run(runs: list[Run], benchmark: str) -> Run | None:
    """The newest full run that ran the benchmark; the newest quick one only when no full run has."""
    ran = [run for run in ordered(runs) if benchmark in run.benchmarks()]
    full = [run for run in ran if not run.quick]
    chosen = full or ran
    return chosen[-1] if chosen else None


def latest_figures(run: Run, benchmark: str) -> list[tuple[Result, Figure]]:
    """The run's figures of one benchmark; a figure repeated by a later result of the same run counts once."""
    picked: dict[str, tuple[Result, Figure]] = {}
    for result in run.results:
        if result.benchmark == benchmark:
            for figure in result.figures:
                picked[figure.name] = (result, figure)
    return list(picked.values())


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _figure_cells(figure: Figure) -> list[object]:
    return [figure.name, format_value(figure.value, figure.unit), figure.target, MARKS[figure.met], figure.baseline]


def _failure_text(run: Run, failure: Failure) -> str:
    log = f"; log `results/{run.id}/{failure.log}`" if failure.log else ""
    return f"**failed**: {failure.reason}{log}"


def benchmark_order(template: str, runs: list[Run]) -> list[str]:
    """The template's sections first, in order; then any other benchmark found in the runs, by name."""
    named = [match.group(2) for match in PLACEHOLDER.finditer(template) if match.group(2)]
    found = sorted({name for run in runs for name in run.benchmarks()} - set(named))
    return named + found


def summary(runs: list[Run], order: list[str]) -> str:
    header = ["benchmark", "figure", "value", "target", "met", "baseline (same run)", "date", "machine"]
    lines = [_row(header), _row(["---"] * len(header))]
    for benchmark in order:
        run = latest_run(runs, benchmark)
        if run is None:
            lines.append(_row([benchmark, "no results yet", "", "", "", "", "", ""]))
            continue
        for result, figure in latest_figures(run, benchmark):
            lines.append(_row([benchmark, *_figure_cells(figure), format_date(run), result_machine(run, result)]))
        for failure in (f for f in run.failures if f.benchmark == benchmark):
            machine = describe_machine(run.machine, failure.load_at_start)
            lines.append(_row([benchmark, _failure_text(run, failure), "", "", "", "", format_date(run), machine]))
    return "\n".join(lines)


def history(runs: list[Run], benchmark: str) -> str:
    """Every run's figures of one benchmark, newest run first; date and machine once per result."""
    header = ["date", "machine", "figure", "value", "target", "met", "baseline (same run)"]
    lines = [_row(header), _row(["---"] * len(header))]
    for run in reversed(ordered(runs)):
        for result in (r for r in run.results if r.benchmark == benchmark):
            first = [format_date(run), result_machine(run, result)]
            for figure in result.figures:
                lines.append(_row([*first, *_figure_cells(figure)]))
                first = ["", ""]
        for failure in (f for f in run.failures if f.benchmark == benchmark):
            machine = describe_machine(run.machine, failure.load_at_start)
            lines.append(_row([format_date(run), machine, _failure_text(run, failure), "", "", "", ""]))
    if len(lines) == 2:
        return "No results yet."
    return "\n".join(lines)


def render(template: str, runs: list[Run]) -> str:
    order = benchmark_order(template, runs)

    def fill(match: re.Match[str]) -> str:
        name = match.group(2)
        return history(runs, name) if name else summary(runs, order)

    return PLACEHOLDER.sub(fill, template)
