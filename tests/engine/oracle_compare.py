"""Planner against vLLM, case by case: what tests/engine/test_planner_oracle.py asserts and oracle_report prints.

Pure: joins a case of planner_cases.py with vllm_oracle.py's verdict on it. A case agrees when
* the planner refuses (an error finding) every shape vLLM's config, model construction or KV-cache step refuses,
  for a parallelism reason (tp_*/pp_* codes) where vLLM refused the parallel shape, and has no parallelism refusal
  of a shape vLLM builds;
* its suggested maxModelLen is accepted by vLLM on the planner's own KV budget, within TOLERANCE of the largest
  maxModelLen vLLM would start with on that budget, and accepted by the planner itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TOLERANCE = 0.01
# tp_* codes that are the operator's placement rules, not vLLM's checks (a TP group within one node).
PLACEMENT = frozenset({"tp_exceeds_gpus_per_node", "tp_group_spans_nodes"})


def parallelism_errors(errors: list[str]) -> list[str]:
    return [code for code in errors if code.startswith(("tp_", "pp_")) and code not in PLACEMENT]


def setting(case: dict[str, Any]) -> str:
    name: str = case["setting"]
    return name


@dataclass
class Comparison:
    ident: str
    case: dict[str, Any]
    verdict: dict[str, Any]
    problems: list[str] = field(default_factory=list)

    @property
    def plan(self) -> dict[str, Any] | None:
        plan: dict[str, Any] | None = self.case["as_written"]["plan"]
        return plan

    @property
    def suggested(self) -> int | None:
        return self.plan["suggested"] if self.plan else None

    @property
    def limit(self) -> int | None:
        limit: int | None = self.verdict.get("limit")
        return limit

    @property
    def relative_error(self) -> float | None:
        """(planner - vLLM) / vLLM; None where there is nothing to compare."""
        if self.suggested is None or self.limit is None:
            return None
        if self.limit == 0:
            return 0.0 if self.suggested == 0 else float("inf")
        return (self.suggested - self.limit) / self.limit

    @property
    def vllm_accepts_suggestion(self) -> bool | None:
        at = self.verdict.get("at_suggestion")
        return None if at is None else bool(at["accepted"])

    @property
    def vllm_weights_gib(self) -> float | None:
        weights = self.verdict.get("weights_bytes")
        return max(weights) / (1 << 30) if weights else None

    def explain(self) -> str:
        case, verdict = self.case, self.verdict
        lines = [f"{self.ident}: {'; '.join(self.problems)}"]
        plan = self.plan
        if plan:
            lines.append(
                f"  planner: suggests {plan['suggested']:,} on {plan['kv_cache_bytes']:,} KV bytes per GPU "
                f"({plan['kv_rule']}, max_num_batched_tokens {plan['max_num_batched_tokens']}, concurrent batches "
                f"{plan['max_concurrent_batches']}, weights {plan['weights_gib']:.2f} GiB)"
            )
        if "limit" in verdict:
            lines.append(
                f"  vLLM: limit {verdict['limit']:,} on that budget (hybrid manager "
                f"{'on' if verdict['hybrid_kv_cache'] else 'off'}, max_num_batched_tokens "
                f"{verdict['max_num_batched_tokens']}, in flight {verdict['max_in_flight_tokens']}, weights "
                f"{self.vllm_weights_gib or 0:.2f} GiB, layers {verdict.get('layers')})"
            )
        if verdict.get("error"):
            lines.append(f"  vLLM refused ({verdict['stage']}): {verdict['error'][:600]}")
        at = verdict.get("at_suggestion")
        if at and not at["accepted"]:
            lines.append(f"  vLLM at the suggestion ({at['stage']}): {at['error'][:600]}")
        errors = case["as_written"]["errors"]
        if errors:
            lines.append(f"  planner errors as written: {', '.join(errors)}")
        return "\n".join(lines)


def compare(ident: str, case: dict[str, Any], verdict: dict[str, Any]) -> Comparison:
    result = Comparison(ident, case, verdict)
    problems = result.problems
    errors = case["as_written"]["errors"]
    refusing = parallelism_errors(errors)
    if verdict.get("harness_error"):
        problems.append(f"the oracle cannot express this case (a harness gap, no verdict): {verdict['harness_error']}")
        return result
    if not verdict["accepted"]:
        if case["kind"] == "verdict" and not refusing:
            problems.append(f"vLLM refuses the shape ({verdict['error'][:200]}) but the planner has no tp_*/pp_* error")
        elif not errors:
            problems.append(f"vLLM refuses ({verdict['error'][:200]}) but the planner accepts")
        return result
    if refusing:
        problems.append(f"the planner refuses ({', '.join(refusing)}) a shape vLLM builds")
    if case["kind"] != "memory":
        return result
    plan = result.plan
    if plan is None:
        problems.append(f"the planner made no memory plan (errors: {', '.join(errors) or 'none'})")
        return result
    suggested, limit = plan["suggested"], verdict["limit"]
    if suggested > 0 and result.vllm_accepts_suggestion is False:
        problems.append(f"vLLM refuses the suggested maxModelLen {suggested:,} (its limit on that budget: {limit:,})")
    error = result.relative_error
    if error is not None and abs(error) > TOLERANCE:
        shown = "no limit at all" if error == float("inf") else f"{error:+.2%}"
        problems.append(f"suggestion {suggested:,} vs vLLM's {limit:,}: {shown}, beyond {TOLERANCE:.0%}")
    at = case["at_suggestion"]
    if suggested > 0 and at is not None and at["errors"]:
        problems.append(f"the planner refuses its own suggestion {suggested:,}: {', '.join(at['errors'])}")
    return result


def compare_all(cases: dict[str, dict[str, Any]], verdicts: dict[str, dict[str, Any]]) -> list[Comparison]:
    return [compare(ident, case, verdicts[ident]) for ident, case in cases.items()]
