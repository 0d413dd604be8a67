"""vLLM 0.32 as the planner's oracle: for every catalog model x GPU x TP/PP x setting the engine venv can express,
vLLM's own config construction, model construction (meta device, faked TP/PP groups) and KV-cache fitting on the
planner's KV budget (tests/engine/vllm_oracle.py, whose docstring says what is made equal to CUDA and what is not)
against the planner's public API (tests/engine/planner_cases.py). The cases and the agreement rule are in
tests/engine/oracle_compare.py; ``python -m tests.engine.oracle_report`` prints the comparison as a table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.engine import hf_config
from tests.engine.oracle_compare import Comparison, compare_all
from tests.engine.oracle_run import OracleSetupError, planner_cases, vllm_verdicts

pytestmark = pytest.mark.engine


def _cases() -> dict[str, dict[str, Any]]:
    try:
        cases: dict[str, dict[str, Any]] = planner_cases()["cases"]
    except OracleSetupError as error:
        raise pytest.UsageError(str(error)) from error
    return cases


def _ids(kind: str) -> list[str]:
    return [ident for ident, case in _cases().items() if case["kind"] == kind]


@pytest.fixture(scope="session")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Comparison]:
    document = planner_cases()
    verdicts = vllm_verdicts(document, Path(tmp_path_factory.mktemp("vllm-oracle")))
    assert verdicts["vllm_version"] == document["vllm_version"], "the oracle ran another vLLM than the cases name"
    return {comparison.ident: comparison for comparison in compare_all(document["cases"], verdicts["cases"])}


@pytest.mark.parametrize("ident", _ids("memory"))
def test_vllm_accepts_the_planners_suggestion_within_one_percent(ident: str, oracle: dict[str, Comparison]) -> None:
    comparison = oracle[ident]
    assert not comparison.problems, comparison.explain()


@pytest.mark.parametrize("ident", _ids("verdict"))
def test_the_planner_refuses_what_vllm_refuses(ident: str, oracle: dict[str, Comparison]) -> None:
    comparison = oracle[ident]
    assert not comparison.problems, comparison.explain()


def test_the_cases_cover_the_catalog() -> None:
    """Every catalog model and GPU has memory cases: none is left out silently."""
    cases = _cases().values()
    assert {case["model"] for case in cases if case["kind"] == "memory"} == set(hf_config.catalog())
    gpus = {case["gpu"] for case in cases if case["kind"] == "memory"}
    assert gpus >= {case["gpu"] for case in cases}, "a GPU only in verdict cases"
    assert len(gpus) > 1


def test_the_oracle_builds_every_layer(oracle: dict[str, Comparison]) -> None:
    """Harness check: the stages built under the faked PP groups hold the model's layers once each, the EAGLE head's
    one more."""
    for comparison in oracle.values():
        verdict, case = comparison.verdict, comparison.case
        if not verdict["accepted"] or case["kind"] != "memory":
            continue
        facts = hf_config.catalog()[case["model"]]["config"]
        draft = 1 if case["setting"] == "eagle3" else 0
        built = sum(sum(stage.values()) for stage in verdict["layers"])
        assert built == facts["num_hidden_layers"] + draft, f"{comparison.ident}: {verdict['layers']}"


def test_the_oracle_schedules_as_on_cuda(oracle: dict[str, Comparison]) -> None:
    """Harness check: the CPU platform's overrides are undone (async scheduling and Model Runner V2 are CUDA's
    defaults for every case here) and the batch defaults are a GPU's, not the CPU's 2048 x world size."""
    for comparison in oracle.values():
        verdict = comparison.verdict
        if "async_scheduling" not in verdict:
            continue
        assert verdict["async_scheduling"], comparison.ident
        assert verdict["v2_model_runner"], comparison.ident
        assert verdict["max_num_batched_tokens"] in (2048, 8192, 16384), comparison.explain()
