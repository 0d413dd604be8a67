"""Runs both sides of the vLLM oracle: planner_cases.py in the operator's venv, vllm_oracle.py in this (the
engine) venv. Used by test_planner_oracle.py and oracle_report.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


class OracleSetupError(RuntimeError):
    """A side of the oracle could not run (a missing venv, a crash): not a verdict."""


def operator_python() -> str:
    return os.environ.get("LLAMAOPS_OPERATOR_PYTHON") or str(ROOT / ".venv" / "bin" / "python")


@cache
def planner_cases() -> dict[str, Any]:
    """planner_cases.py's output: ``{"vllm_version", "cases": {id: case}}``."""
    python = operator_python()
    if not Path(python).exists():
        raise OracleSetupError(f"no operator venv python at {python}: set LLAMAOPS_OPERATOR_PYTHON")
    done = subprocess.run(
        [python, str(HERE / "planner_cases.py")], capture_output=True, text=True, check=False, cwd=ROOT, timeout=900
    )
    if done.returncode != 0:
        raise OracleSetupError(f"planner_cases.py failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def vllm_verdicts(cases: dict[str, Any], workdir: Path, jobs: int | None = None) -> dict[str, Any]:
    """vllm_oracle.py's output on ``cases`` (planner_cases.py's document), run with this interpreter."""
    given, out = workdir / "cases.json", workdir / "verdicts.json"
    given.write_text(json.dumps(cases))
    command = [sys.executable, "-m", "tests.engine.vllm_oracle", str(given), str(out)]
    done = subprocess.run(
        [*command, *([str(jobs)] if jobs else [])], capture_output=True, text=True, check=False, cwd=ROOT, timeout=3600
    )
    if done.returncode != 0 or not out.exists():
        raise OracleSetupError(f"vllm_oracle.py failed:\n{done.stderr[-6000:]}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result
