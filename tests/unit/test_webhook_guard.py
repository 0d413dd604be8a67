"""Admission requests kopf cannot take are still answered with a review (issue 12's bad input).

Found by tests/integration/test_bad_input.py: kopf answered HTTP 500 to a review whose object's metadata is not a
mapping (it reads metadata.uid before any handler runs), and the webhook answered nothing coded for an object that
is not a mapping at all.
"""

from __future__ import annotations

from typing import Any

import pytest
from kopf._core.engines.admission import MissingDataError
from kopf._core.reactor.inventory import ResourceMemories

from llama_operator.handlers.admission import guarded
from llama_operator.webhook import decide, respond


def review(obj: Any) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": "u-1", "operation": "CREATE", "userInfo": {"username": "x"}, "object": obj},
    }


async def test_kopf_fails_on_metadata_that_is_not_a_mapping() -> None:
    # The failure guarded() answers for; should kopf ever take such an object, this test says so.
    with pytest.raises(AttributeError):
        await ResourceMemories().recall_memo({"metadata": ["name", "namespace"]}, ephemeral=True)


async def test_a_kopf_failure_is_answered_with_the_same_decision_made_directly() -> None:
    async def kopf_fn(request: Any, **_: Any) -> Any:
        await ResourceMemories().recall_memo(request["request"]["object"], ephemeral=True)
        raise AssertionError("not reached")

    data = review({"apiVersion": "llamaops.dev/v1alpha1", "kind": "LlamaDeployment", "metadata": ["a", "b"]})
    answer = await guarded(kopf_fn)(data, webhook="validate")
    assert answer == respond(data)
    assert answer["response"]["uid"] == "u-1"
    assert answer["response"]["allowed"] is False
    assert "metadata: invalid_type: " in answer["response"]["status"]["message"]


async def test_kopf_answers_pass_through_and_its_own_request_errors_stay() -> None:
    async def ok(request: Any, **_: Any) -> Any:
        return {"response": {"uid": "u-1", "allowed": True}}

    assert await guarded(ok)(review({}), webhook="validate") == {"response": {"uid": "u-1", "allowed": True}}

    async def malformed(request: Any, **_: Any) -> Any:
        raise MissingDataError("User info is missing from the admission request.")

    with pytest.raises(MissingDataError):  # kopf's server answers these 400
        await guarded(malformed)(review({}), webhook="validate")


def test_an_object_that_is_not_a_mapping_is_refused_with_a_code() -> None:
    # Was: refused with "carries no object" and code 400, as if there were none, and no finding code.
    decision = decide("CREATE", ["not", "an", "object"])
    assert (decision.allowed, decision.code) == (False, 403)
    assert "- (object): not_an_object: " in decision.message
    assert respond(review("text"))["response"]["status"]["code"] == 403
