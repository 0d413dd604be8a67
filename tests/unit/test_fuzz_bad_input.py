"""Generated bad input through the operator's own code, in process (the fast tier of issue 12's bad input).

The same strategies as tests/integration/test_bad_input.py (tests/fuzz), fewer objects: validate() and the
reconcile path's plan() never raise, report no internal error and refuse only with snake_case finding codes; the
status the operator would write passes the CRD's schema; the webhook's decision (decide, respond) is total and
every refusal names the codes. The integration test sends 10,000 through the running webhook and operator.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from llama_operator.webhook import decide, respond
from tests.fuzz.checks import check_in_process, error_codes
from tests.fuzz.reviews import Case, cases
from tests.fuzz.tally import Tally

OBJECTS = 1_000


def test_generated_objects_through_validate_plan_and_decide() -> None:
    tally = Tally("in process")

    @settings(
        max_examples=OBJECTS,
        derandomize=True,  # the same objects every run
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(cases())
    def one(case: Case) -> None:
        check_in_process(case.document)
        decision = decide(case.operation, case.document, case.old)
        answer = respond(case.review)["response"]
        assert answer["allowed"] == decision.allowed
        if decision.allowed:
            tally.accept()
            return
        assert answer["status"] == {"code": decision.code, "message": decision.message}
        codes = error_codes(case.document)
        assert codes
        assert all(f": {code}: " in decision.message for code in codes), (codes, decision.message[:2000])
        tally.reject(codes)

    one()
    print(f"\n{tally.report()}")
    assert tally.objects == OBJECTS, tally.report()
    # Both outcomes, and the planner's own checks beyond the schema's, were reached.
    assert tally.accepted >= 20, tally.report()
    assert len(tally.codes) >= 15, tally.report()
