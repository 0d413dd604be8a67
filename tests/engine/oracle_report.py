"""Prints the planner-vs-vLLM comparison of tests/engine/test_planner_oracle.py as Markdown tables.

Engine venv: ``"$(images/vllm/scripts/engine-venv.sh)/bin/python" -m tests.engine.oracle_report [--all] [--jobs N]``
(the planner side runs in the operator's venv, .venv or $LLAMAOPS_OPERATOR_PYTHON). Prints the figures (cases,
agreement, relative error of the suggested maxModelLen against vLLM's largest on the same budget), the accuracy by
model and setting, weights per GPU against vLLM's model, and every disagreement; ``--all`` adds every memory case.
``--workdir DIR`` keeps the two sides' JSON there; ``--workdir DIR --reuse`` prints from them without running.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from tests.engine.oracle_compare import TOLERANCE, Comparison, compare_all, setting
from tests.engine.oracle_run import planner_cases, vllm_verdicts


def _pct(value: float | None) -> str:
    if value is None:
        return "-"
    return "inf" if value == float("inf") else f"{value:+.2%}"


def _num(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _shape(comparison: Comparison) -> str:
    case = comparison.case
    return f"TP{case['tp']} PP{case['pp']} kv {case['kv_cache_dtype']}, {setting(case)}"


def _compared(comparisons: Iterable[Comparison]) -> list[Comparison]:
    """Memory cases with a length on both sides (the planner planned, vLLM built the model, one of them fits)."""
    return [
        c
        for c in comparisons
        if c.case["kind"] == "memory" and c.relative_error is not None and (c.suggested or c.limit)
    ]


def summary(comparisons: list[Comparison], seconds: float, version: str) -> list[str]:
    memory = [c for c in comparisons if c.case["kind"] == "memory"]
    verdict = [c for c in comparisons if c.case["kind"] == "verdict"]
    compared = _compared(memory)
    finite = [abs(c.relative_error or 0.0) for c in compared if c.relative_error != float("inf")]
    refused_suggestions = [c for c in compared if c.vllm_accepts_suggestion is False]
    lines = [
        f"vLLM {version}; vLLM side {seconds:.0f} s",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| memory cases (model x GPU x TP x PP x KV dtype x setting) | {len(memory):,} |",
        f"| ... refused by vLLM's config or model construction (and by the planner) | "
        f"{sum(1 for c in memory if c.verdict.get('accepted') is False):,} |",
        f"| ... with a maxModelLen on either side | {len(compared):,} |",
        f"| ... agreeing (accepted by vLLM, within {TOLERANCE:.0%}, accepted by the planner) | "
        f"{sum(1 for c in memory if not c.problems):,} |",
        f"| suggestions vLLM refuses on the planner's budget | {len(refused_suggestions):,} |",
        f"| relative error: median, p95, max (abs) | {_stats(finite)} |",
        f"| exact (0 tokens apart) | {sum(1 for c in compared if c.suggested == c.limit):,} |",
        f"| verdict cases (TP/PP vLLM refuses or builds) | {len(verdict):,} |",
        f"| ... agreeing | {sum(1 for c in verdict if not c.problems):,} |",
    ]
    return lines


def _stats(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return f"{statistics.median(ordered):.3%}, {p95:.3%}, {ordered[-1]:.3%}"


def by_group(comparisons: list[Comparison]) -> list[str]:
    """Accuracy per model and setting: cases, disagreements, worst relative error (signed)."""
    groups: dict[tuple[str, str], list[Comparison]] = defaultdict(list)
    for c in _compared(comparisons):
        groups[c.case["model"], setting(c.case)].append(c)
    lines = [
        "| model | setting | cases | disagree | worst error | worst case |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for (model, name), group in sorted(groups.items()):
        worst = max(group, key=lambda c: abs(c.relative_error or 0.0))
        bad = sum(1 for c in group if c.problems)
        where = f"{worst.case['gpu']} {_shape(worst)}"
        lines.append(f"| {model} | {name} | {len(group)} | {bad} | {_pct(worst.relative_error)} | {where} |")
    return lines


def weights(comparisons: list[Comparison]) -> list[str]:
    """Weights on one GPU (the heaviest stage) against the bytes of vLLM's model built for the case."""
    seen: dict[tuple[object, ...], Comparison] = {}
    for c in comparisons:
        case = c.case
        if case["kind"] == "memory" and c.plan and c.vllm_weights_gib:
            seen.setdefault((case["model"], case["tp"], case["pp"], setting(case) == "eagle3"), c)
    lines = ["| model | TP x PP | EAGLE-3 | planner GiB | vLLM GiB | error |", "| --- | --- | --- | --- | --- | --- |"]
    for (model, tp, pp, eagle), c in sorted(seen.items()):
        planner, vllm = c.plan["weights_gib"] if c.plan else 0.0, c.vllm_weights_gib or 0.0
        lines.append(
            f"| {model} | {tp} x {pp} | {'yes' if eagle else 'no'} | {planner:.2f} | {vllm:.2f} | "
            f"{_pct((planner - vllm) / vllm if vllm else None)} |"
        )
    return lines


def rows(comparisons: Iterable[Comparison]) -> list[str]:
    lines = [
        "| case | planner | vLLM limit | error | vLLM at suggestion | problems |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for c in comparisons:
        accepted = {None: "-", True: "accepts", False: "refuses"}[c.vllm_accepts_suggestion]
        problems = "; ".join(c.problems).replace("|", "/").replace("\n", " ") or "agree"
        lines.append(
            f"| {c.ident} | {_num(c.suggested)} | {_num(c.limit)} | {_pct(c.relative_error)} | {accepted} | "
            f"{problems} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="also list every memory case")
    parser.add_argument("--jobs", type=int, default=None, help="oracle worker processes (default: 2)")
    parser.add_argument("--workdir", type=Path, help="keep cases.json and verdicts.json here")
    parser.add_argument("--reuse", action="store_true", help="print from the workdir's files instead of running")
    args = parser.parse_args(argv)
    started = time.monotonic()
    if args.reuse:
        if args.workdir is None:
            parser.error("--reuse needs --workdir")
        document = json.loads((args.workdir / "cases.json").read_text())
        verdicts = json.loads((args.workdir / "verdicts.json").read_text())
    elif args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        document = planner_cases()
        verdicts = vllm_verdicts(document, args.workdir, args.jobs)
    else:
        document = planner_cases()
        with tempfile.TemporaryDirectory(prefix="oracle-report-") as tmp:
            verdicts = vllm_verdicts(document, Path(tmp), args.jobs)
    seconds = verdicts.get("seconds", time.monotonic() - started)
    comparisons = compare_all(document["cases"], verdicts["cases"])
    out = ["## Planner against vLLM", "", *summary(comparisons, seconds, verdicts["vllm_version"])]
    out += ["", "### Accuracy by model and setting", "", *by_group(comparisons)]
    out += ["", "### Weights per GPU", "", *weights(comparisons)]
    disagreements = [c for c in comparisons if c.problems]
    out += ["", f"### Disagreements ({len(disagreements)})", "", *rows(disagreements)]
    if args.all:
        memory = [c for c in comparisons if c.case["kind"] == "memory"]
        out += ["", "### Every memory case", "", *rows(memory)]
    print("\n".join(out))
    return 1 if disagreements else 0


if __name__ == "__main__":
    sys.exit(main())
