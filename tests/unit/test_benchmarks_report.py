"""benchmarks/README.md is rendered from its template and the runs under benchmarks/results/: figure formatting,
met marks, which run is "latest", history order, failures, and that the committed README has not drifted."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks import readme, report, run_all
from benchmarks.report import Figure

ROOT = Path(__file__).resolve().parents[2]


def _run(
    run_id: str,
    started: str,
    results: list[tuple[str, list[Figure]]],
    *,
    quick: bool = False,
    failures: list[dict[str, Any]] | None = None,
) -> readme.Run:
    document = {
        "started": started,
        "quick": quick,
        "machine": {"cpu": "Test CPU", "cores": 2, "memory_gib": 23.5, "load_at_start": 1.25},
        "invocations": failures or [],
    }
    documents = [{"benchmark": name, "figures": [asdict(f) for f in figures]} for name, figures in results]
    return readme.parse_run(run_id, document, documents)


def _rows(table: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in table.splitlines()[2:]]


def test_values_keep_the_benchmarks_precision_with_thousands_separators() -> None:
    assert readme.format_value(13862, "specs/s") == "13,862 specs/s"
    assert readme.format_value(12.0, "s") == "12 s"
    assert readme.format_value(0.059, "ms") == "0.059 ms"
    assert readme.format_value(2.8, "x") == "2.8x"
    assert readme.format_value(-13.0, "ms") == "-13 ms"
    assert readme.format_value(float("nan"), "s") == "n/a"
    assert readme.format_value(3, "") == "3"


def test_met_unmet_and_no_target_are_marked() -> None:
    run = _run(
        "r1",
        "2026-11-24T03:00:00Z",
        [
            (
                "bench",
                [
                    Figure("fast", 1.0, "s", "< 5 s", True, "floor 0.5 s"),
                    Figure("slow", 9.0, "s", "< 5 s", False, "floor 0.5 s"),
                    Figure("info", 3.0, "s"),
                ],
            )
        ],
    )
    rows = {row[1]: row for row in _rows(readme.summary([run], ["bench"]))}
    assert rows["fast"][2:6] == ["1 s", "< 5 s", "✓", "floor 0.5 s"]
    assert rows["slow"][4] == "✗"
    assert rows["info"][3:5] == ["", ""]
    assert rows["fast"][6:] == ["2026-11-24 03:00 UTC", "Test CPU, 2 cores, 23.5 GiB, load 1.2"]


def test_history_is_newest_first_and_a_hand_recorded_date_sorts_before_that_days_runs() -> None:
    hand = _run("2026-11-23-hand-recorded", "2026-11-23", [("bench", [Figure("f", 1.0, "s")])])
    morning = _run("m", "2026-11-23T08:00:00Z", [("bench", [Figure("f", 2.0, "s")])])
    next_day = _run("n", "2026-11-24T01:00:00Z", [("bench", [Figure("f", 3.0, "s")])])
    other = _run("o", "2026-11-25T01:00:00Z", [("other", [Figure("g", 9.0, "s")])])
    history = readme.history([next_day, hand, other, morning], "bench")
    assert [row[3] for row in _rows(history)] == ["3 s", "2 s", "1 s"]
    assert [run.id for run in readme.ordered([next_day, hand, morning])] == ["2026-11-23-hand-recorded", "m", "n"]


def test_history_names_date_and_machine_once_per_result() -> None:
    run = _run("r", "2026-11-24T03:00:00Z", [("bench", [Figure("a", 1.0, "s"), Figure("b", 2.0, "s")])])
    rows = _rows(readme.history([run], "bench"))
    assert rows[0][0] == "2026-11-24 03:00 UTC"
    assert rows[1][:2] == ["", ""]


def test_latest_prefers_a_full_run_to_a_newer_quick_one() -> None:
    full = _run("full", "2026-11-24T01:00:00Z", [("bench", [Figure("f", 1.0, "s")])])
    quick = _run("quick", "2026-11-24T02:00:00Z", [("bench", [Figure("f", 2.0, "s")])], quick=True)
    assert readme.latest_run([full, quick], "bench") is full
    assert readme.latest_run([quick], "bench") is quick
    assert readme.latest_run([full], "absent") is None
    row = _rows(readme.summary([quick], ["bench"]))[0]
    assert row[6] == "2026-11-24 02:00 UTC (quick)"


def test_a_figure_repeated_in_one_run_is_summarised_once_from_its_last_result() -> None:
    run = _run(
        "r",
        "2026-11-24T01:00:00Z",
        [("bench", [Figure("p99", 5.0, "ms")]), ("bench", [Figure("p99", 7.0, "ms"), Figure("n=1000", 1.0, "s")])],
    )
    assert [(f.name, f.value) for _, f in readme.latest_figures(run, "bench")] == [("p99", 7.0), ("n=1000", 1.0)]
    assert len(_rows(readme.history([run], "bench"))) == 3


def test_failures_are_shown_with_their_reason_and_log() -> None:
    failed = {"benchmark": "bench", "error": "exit 1", "log": "bench.log", "load_at_start": 3.5}
    run = _run("r", "2026-11-24T01:00:00Z", [], failures=[failed, {"benchmark": "fine", "error": ""}])
    assert [f.benchmark for f in run.failures] == ["bench"]
    summary_row = _rows(readme.summary([run], ["bench"]))[0]
    assert summary_row[1] == "**failed**: exit 1; log `results/r/bench.log`"
    assert summary_row[7].endswith("load 3.5")
    assert "**failed**: exit 1" in readme.history([run], "bench")
    assert readme.history([run], "fine") == "No results yet."


def test_render_fills_every_placeholder_and_appends_benchmarks_the_template_lacks() -> None:
    template = "# t\n{{summary}}\n## a\n{{ history a }}\n## b\n{{history b}}\n"
    run = _run("r", "2026-11-24T01:00:00Z", [("a", [Figure("fa", 1.0, "s")]), ("zz", [Figure("fz", 2.0, "s")])])
    out = readme.render(template, [run])
    assert "{{" not in out
    assert [row[0] for row in _rows(out.split("\n## a")[0].split("# t\n")[1].strip())] == ["a", "b", "zz"]
    assert out.split("## b\n")[1].strip() == "No results yet."
    assert "| a | fa | 1 s |" in out


def test_cells_escape_pipes() -> None:
    run = _run("r", "2026-11-24T01:00:00Z", [("a", [Figure("x|y", 1.0, "s", baseline="p|q")])])
    assert "x\\|y" in readme.history([run], "a")
    assert "p\\|q" in readme.history([run], "a")


def test_machine_description() -> None:
    machine = {"cpu": "Xeon", "cores": 2, "memory_gib": 23.5, "load_at_start": 4.24}
    assert readme.describe_machine(machine) == "Xeon, 2 cores, 23.5 GiB, load 4.2"
    assert readme.describe_machine(machine, 0.5) == "Xeon, 2 cores, 23.5 GiB, load 0.5"
    assert readme.describe_machine({"description": "dev box"}, 9.0) == "dev box"


def test_runs_load_from_disk_as_the_benchmarks_write_them(tmp_path: Path) -> None:
    for run_id, started in (("b", "2026-11-24T02:00:00Z"), ("a", "2026-11-24T01:00:00Z")):
        (tmp_path / run_id).mkdir()
        (tmp_path / run_id / "run.json").write_text(json.dumps({"started": started, "machine": {}}))
        report.write(tmp_path / run_id / "bench-2.json", "bench", [Figure("second", 2.0, "s")], load_at_start=1.0)
        report.write(tmp_path / run_id / "bench-1.json", "bench", [Figure("first", 1.0, "s", "< 5 s", True)])
    (tmp_path / "no-run-json").mkdir()
    runs = readme.load_runs(tmp_path)
    assert [run.id for run in runs] == ["a", "b"]
    assert [[f.name for f in r.figures] for r in runs[0].results] == [["first"], ["second"]]
    assert runs[0].results[0].figures[0].met is True


def test_the_template_has_a_section_for_every_benchmark_run_all_runs() -> None:
    template = run_all.TEMPLATE.read_text(encoding="utf-8")
    sections = re.findall(r"\{\{ *history +([a-z0-9_]+) *\}\}", template)
    assert sorted(sections) == sorted(b.name for b in run_all.BENCHMARKS)
    assert template.count("{{summary}}") == 1


def test_the_committed_readme_is_rendered_from_the_recorded_runs() -> None:
    expected = readme.render(run_all.TEMPLATE.read_text(encoding="utf-8"), readme.load_runs(run_all.RESULTS))
    assert run_all.README.read_text(encoding="utf-8") == expected, (
        "benchmarks/README.md drifted: run `python benchmarks/run_all.py --render`"
    )
