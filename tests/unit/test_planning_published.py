"""The memory planner against public deployments that ran (knowledge/data/planner.yaml, `published`).

A refusal blocks someone's deployment, so none of these may be refused: each is admitted, at worst with a warning
that it sits inside the reserve's uncertainty band. The planner's suggestion must not be above vLLM's own limit
either; that is checked against vLLM's code in tests/engine/test_planner_oracle.py.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import pytest
import yaml

from llama_operator.planning import validate

POINTS: list[dict[str, Any]] = yaml.safe_load(
    resources.files("llama_operator.knowledge").joinpath("data", "planner.yaml").read_text(encoding="utf-8")
)["published"]


def _spec(point: dict[str, Any]) -> dict[str, object]:
    engine: dict[str, object] = {"vllmVersion": point["vllm"], "tensorParallelSize": point["gpus"]}
    if point["max_model_len"] is not None:
        engine["maxModelLen"] = point["max_model_len"]
    if "gpu_memory_utilization" in point:
        engine["gpuMemoryUtilization"] = point["gpu_memory_utilization"]
    if "extra_args" in point:
        engine["extraArgs"] = point["extra_args"]
    return {
        "apiVersion": "llamaops.dev/v1alpha1",
        "kind": "LlamaDeployment",
        "metadata": {"name": "published"},
        "spec": {
            "model": {"name": point["model"]},
            "engine": engine,
            "resources": {"gpuProduct": point["gpu"]},
            # Known-issue findings (e.g. 0.8.3's chunk hazard) are not what this test is about.
            "validation": {"knownIssues": "Warn"},
        },
    }


def test_every_point_has_a_source() -> None:
    assert len(POINTS) >= 8
    for point in POINTS:
        assert str(point["source"]).startswith("https://"), point


def _name(point: dict[str, Any]) -> str:
    return f"{point['model'].split('/')[-1]}-{point['gpus']}x-{point['max_model_len']}"


@pytest.mark.parametrize("point", POINTS, ids=_name)
def test_published_deployment_is_not_refused(point: dict[str, Any]) -> None:
    result = validate(_spec(point))
    assert result.valid, [finding.message for finding in result.errors]
    assert result.plan is not None
    wanted = point["max_model_len"] or 0
    # Admitted means within reach of the optimistic end of the band; the memory finding says which end.
    assert result.plan.max_model_len_that_may_fit >= wanted
    codes = {finding.code for finding in result.findings}
    assert codes & {"memory_plan", "max_model_len_may_not_fit"}


def test_a_deployment_that_cannot_load_is_refused() -> None:
    """vllm#16712: Scout BF16 on 2xH100 NVL died with CUDA OOM while loading (101 GiB of weights per 93 GiB GPU)."""
    point = {"model": "meta-llama/Llama-4-Scout-17B-16E-Instruct", "gpu": "NVIDIA-H100-NVL", "gpus": 2,
             "vllm": "0.8.4", "max_model_len": 1000, "gpu_memory_utilization": 0.99}  # fmt: skip
    result = validate(_spec(point))
    assert [finding.code for finding in result.errors] == ["weights_exceed_gpu_memory"]
