"""The agreement rule of the vLLM oracle (tests/engine/oracle_compare.py), on hand-made verdicts: the engine tier
runs it on vLLM's, this checks that each kind of disagreement is reported and agreement is not."""

from __future__ import annotations

from typing import Any

from tests.engine.oracle_compare import compare


def memory_case(suggested: int, errors: list[str] | None = None, at_errors: list[str] | None = None) -> dict[str, Any]:
    plan = {
        "suggested": suggested,
        "kv_cache_bytes": 10 << 30,
        "weights_gib": 25.0,
        "kv_rule": "FullLength",
        "max_num_batched_tokens": 8192,
        "max_concurrent_batches": 2,
    }
    return {
        "kind": "memory",
        "setting": "default",
        "model": "m",
        "gpu": "g",
        "tp": 8,
        "pp": 1,
        "kv_cache_dtype": "auto",
        "extra_args": [],
        "as_written": {"errors": errors or [], "plan": plan},
        "at_suggestion": {"errors": at_errors or []} if suggested else None,
    }


def built(limit: int, accepts: bool) -> dict[str, Any]:
    return {
        "accepted": True,
        "stage": "built",
        "error": "",
        "limit": limit,
        "weights_bytes": [25 << 30],
        "hybrid_kv_cache": False,
        "max_num_batched_tokens": 8192,
        "max_in_flight_tokens": 16384,
        "at_suggestion": {"accepted": accepts, "stage": "kv_cache", "error": "" if accepts else "too long"},
    }


def verdict_case(errors: list[str]) -> dict[str, Any]:
    return {**memory_case(0), "kind": "verdict", "as_written": {"errors": errors, "plan": None}}


def test_a_suggestion_vllm_accepts_within_one_percent_agrees() -> None:
    assert compare("c", memory_case(99_500), built(100_000, accepts=True)).problems == []


def test_a_suggestion_vllm_refuses_is_reported() -> None:
    problems = compare("c", memory_case(100_016), built(100_000, accepts=False)).problems
    assert any("vLLM refuses the suggested maxModelLen 100,016" in problem for problem in problems)


def test_a_suggestion_more_than_one_percent_short_is_reported() -> None:
    comparison = compare("c", memory_case(98_000), built(100_000, accepts=True))
    assert comparison.relative_error == -0.02
    assert any("beyond 1%" in problem for problem in comparison.problems)


def test_a_suggestion_the_planner_itself_refuses_is_reported() -> None:
    problems = compare(
        "c", memory_case(100_000, at_errors=["max_model_len_does_not_fit"]), built(100_000, True)
    ).problems
    assert problems == ["the planner refuses its own suggestion 100,000: max_model_len_does_not_fit"]


def test_nothing_fits_on_both_sides_agrees() -> None:
    assert compare("c", memory_case(0, errors=["weights_exceed_gpu_memory"]), built(0, accepts=True)).problems == []


def test_a_shape_vllm_refuses_needs_a_parallelism_refusal() -> None:
    refused = {"accepted": False, "stage": "config", "error": "heads not divisible"}
    assert compare("v", verdict_case(["tp_not_divisor_of_attention_heads"]), refused).problems == []
    problems = compare("v", verdict_case(["tp_exceeds_gpus_per_node"]), refused).problems
    assert problems == ["vLLM refuses the shape (heads not divisible) but the planner has no tp_*/pp_* error"]


def test_a_parallelism_refusal_of_a_shape_vllm_builds_is_reported() -> None:
    accepted = {"accepted": True, "stage": "built", "error": ""}
    problems = compare("v", verdict_case(["pp_exceeds_layers"]), accepted).problems
    assert problems == ["the planner refuses (pp_exceeds_layers) a shape vLLM builds"]


def test_a_harness_gap_is_not_a_verdict() -> None:
    problems = compare("c", memory_case(100), {"accepted": None, "harness_error": "no config.json form"}).problems
    assert problems == ["the oracle cannot express this case (a harness gap, no verdict): no config.json form"]
