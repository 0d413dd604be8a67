"""Bad input (issue 12): generated LlamaDeployments through the admission webhook and the operator.

Objects come from tests/fuzz (hypothesis, derandomized, so every run sends the same ones): half drawn from the CRD
schema with off-schema values mixed in, half mutated examples. One `llama-operator run --webhook url` serves them
all: it watches namespaces ``fuzz-<run>-*``, and its webhook covers only those labelled with the run's id.

- 10,000 AdmissionReviews straight to the webhook over one kept-alive TLS connection (CREATE, and UPDATE with an
  oldObject): every answer is HTTP 200 with a well-formed review and the same decision as ``decide`` in process,
  and every refusal names finding codes; each object also goes through ``validate`` and the reconcile path's
  ``plan`` in process.
- 200 creates through the real apiserver and webhook (server-side dry run): no 5xx; schema refusals by the
  apiserver are counted apart; the children rendered for an accepted object pass the apiserver's validation too.
- 150 objects the apiserver stores in a namespace the webhook does not cover: the operator stays up, each object
  reaches a phase (the invalid ones Invalid, with finding codes) and the operator logs no traceback.

Set LLAMAOPS_FUZZ_REVIEWS to send fewer reviews while working on this file; the default is the issue's 10,000.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from kubernetes import client

from llama_operator.api import API_VERSION, KIND
from llama_operator.handlers import nodes
from llama_operator.handlers.reconcile import plan
from llama_operator.knowledge import Knowledge, load_knowledge
from llama_operator.knowledge.observed import PRODUCT_LABEL
from llama_operator.planning.depth import too_deep
from llama_operator.webhook import decide
from tests.fuzz.checks import as_stored, check_in_process, codes_ok, error_codes
from tests.fuzz.reviews import Case, Generated, cases, objects, review
from tests.fuzz.tally import Tally
from tests.integration.conftest import Sandbox, wait_for
from tests.integration.fuzz_cluster import FuzzOperator, RawApi, dumps, post_review

pytestmark = pytest.mark.integration

REVIEWS = int(os.environ.get("LLAMAOPS_FUZZ_REVIEWS", "10000"))
APISERVER_SLICE = 200
OPERATOR_SLICE = 150
LABEL = "llamaops.dev/fuzz-test"
DENIED = 'admission webhook "validate.llamaops.dev" denied the request'
# A refusal line: "- <field>: <code>: <message>. Fix: <fix>" (webhook.review.describe_error).
REFUSAL_CODE = re.compile(r"^- .*?: ([a-z][a-z0-9]*(?:_[a-z0-9]+)*): ", re.MULTILINE)


def fuzz_settings(examples: int) -> settings:
    # derandomize: the examples are a function of the test's source, so CI sees the same objects every run.
    return settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )


@pytest.fixture(scope="module")
def operator(sandbox: Sandbox, llama_crd: str) -> Iterator[FuzzOperator]:
    run_id = uuid.uuid4().hex[:6]
    operator = FuzzOperator(sandbox, run_id, LABEL)
    try:
        operator.start()
        yield operator
    finally:
        core = client.CoreV1Api(sandbox.api)
        for namespace in core.list_namespace(label_selector=f"{LABEL}-run={run_id}").items:
            core.delete_namespace(namespace.metadata.name)
        operator.close()


def make_fuzz_namespace(operator: FuzzOperator, suffix: str, *, webhook: bool) -> str:
    name = f"fuzz-{operator.run_id}-{suffix}"
    labels = {f"{LABEL}-run": operator.run_id, "llamaops.dev/test": "integration"}
    if webhook:
        labels[LABEL] = operator.run_id
    client.CoreV1Api(operator.sandbox.api).create_namespace({"metadata": {"name": name, "labels": labels}})
    return name


@pytest.fixture(scope="module")
def webhook_namespace(operator: FuzzOperator) -> str:
    return make_fuzz_namespace(operator, "adm", webhook=True)


@pytest.fixture(scope="module")
def operator_namespace(operator: FuzzOperator) -> str:
    """Outside the webhook's selector: objects the webhook would refuse are stored, for the operator to judge."""
    return make_fuzz_namespace(operator, "ops", webhook=False)


def addressed(document: Any, name: str, namespace: str) -> Any:
    """The object as a client would send it to the apiserver: the apiserver takes apiVersion, kind and metadata
    from the request path and refuses any other metadata, so those are set; the rest is as generated."""
    return {**document, "apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name, "namespace": namespace}}


def well_formed(status: int, body: bytes, case: Case) -> dict[str, Any]:
    assert status == 200, f"HTTP {status} for {case.source}: {body[:1000]!r}"
    review = json.loads(body)
    assert review.get("apiVersion") == "admission.k8s.io/v1", review
    assert review.get("kind") == "AdmissionReview", review
    response: dict[str, Any] = review["response"]
    assert response["uid"] == case.review["request"]["uid"], response
    assert isinstance(response["allowed"], bool), response
    return response


def webhook_knowledge(sandbox: Sandbox) -> Knowledge:
    """What the operator's webhook decides with: the catalogs and the sandbox's GPU nodes (handlers.nodes), whose
    capacity warnings the in-process decision must give too."""
    core = client.CoreV1Api(sandbox.api)
    listed = json.loads(core.list_node(label_selector=PRODUCT_LABEL, _preload_content=False).data)
    return nodes.view_of(listed.get("items") or []).knowledge(load_knowledge())


def test_generated_reviews_straight_to_the_webhook(operator: FuzzOperator, sandbox: Sandbox):
    tally = Tally("webhook, AdmissionReviews posted straight to it")
    knowledge = webhook_knowledge(sandbox)
    connection = operator.connection()
    began = time.monotonic()

    @fuzz_settings(REVIEWS)
    @given(cases())
    def one(case: Case) -> None:
        verdict = check_in_process(case.document)  # validate() and plan(), as the operator runs them
        tally.other[f"in process: {'valid' if verdict.valid else 'invalid'}"] += 1
        tally.other[case.operation] += 1
        decision = decide(case.operation, case.document, case.old, knowledge)
        payload = dumps(case.review)
        if len(payload) > 1 << 20:
            tally.other["reviews over 1 MiB (aiohttp's default limit)"] += 1
        if too_deep(case.document, 990) is not None:
            tally.other["objects nested past 990 levels (Python's default limit)"] += 1
        status, body = post_review(connection, payload)
        tally.other[f"HTTP {status}"] += 1
        response = well_formed(status, body, case)
        assert response["allowed"] == decision.allowed, (case.source, response)
        assert response.get("warnings", []) == list(decision.warnings), (case.source, response)
        if decision.allowed:
            tally.accept()
            return
        result = response["status"]
        assert result["code"] == decision.code, (case.source, result)
        assert 400 <= result["code"] < 500, (case.source, result)
        assert result["message"] == decision.message, (case.source, result)
        codes = error_codes(case.document)
        assert codes_ok(codes), (case.source, result)
        assert all(f": {code}: " in result["message"] for code in codes), (case.source, codes, result)
        tally.reject(codes)

    one()
    connection.close()
    tally.other["seconds"] = round(time.monotonic() - began)
    print(f"\n{tally.report()}")
    operator.check_alive()
    assert tally.objects == REVIEWS, tally.report()
    assert tally.other[f"HTTP {200}"] == REVIEWS, tally.report()


def test_generated_objects_through_the_apiserver(operator: FuzzOperator, webhook_namespace: str):
    raw = RawApi(operator.sandbox.api)
    tally = Tally("apiserver and webhook, server-side dry-run creates")
    numbers = itertools.count()

    @fuzz_settings(APISERVER_SLICE)
    @given(objects())
    def one(item: Generated) -> None:
        source, document = item.source, item.document
        status, answer = raw.create(webhook_namespace, addressed(document, f"f{next(numbers)}", webhook_namespace),
                                    dry_run=True)  # fmt: skip
        tally.other[f"HTTP {status}"] += 1
        message = answer.get("message", "") if isinstance(answer, dict) else str(answer)
        assert status < 500, f"HTTP {status} for {source}: {message[:2000]}"
        if status in (200, 201):
            tally.accept()
            # What the webhook let in, the operator renders; the apiserver must take the children too.
            for manifest in plan(as_stored(answer, webhook_namespace), service_monitors=False).manifests:
                code, refusal = raw.create_child(manifest, webhook_namespace)
                assert code in (200, 201), f"{manifest['kind']} of {source} refused: {refusal}"
        elif status == 403 and DENIED in message:
            codes = REFUSAL_CODE.findall(message)
            assert codes_ok(tuple(codes)), f"{source}: a refusal without finding codes: {message[:2000]}"
            tally.reject(codes)
        else:
            assert status in (400, 422), f"HTTP {status} for {source}: {message[:2000]}"
            tally.objects += 1
            tally.other[f"refused by the apiserver's schema ({answer.get('reason')})"] += 1

    one()
    print(f"\n{tally.report()}")
    operator.check_alive()
    assert tally.objects == APISERVER_SLICE, tally.report()
    assert tally.accepted, tally.report()
    assert tally.rejected, tally.report()


def test_the_operator_survives_generated_objects(operator: FuzzOperator, operator_namespace: str):
    raw = RawApi(operator.sandbox.api)
    tally = Tally("operator, objects stored without the webhook")
    created: dict[str, str] = {}
    numbers = itertools.count()

    @fuzz_settings(OPERATOR_SLICE * 4)
    @given(objects())
    def one(item: Generated) -> None:
        if len(created) >= OPERATOR_SLICE:
            return
        source, document = item.source, item.document
        name = f"f{next(numbers):04d}"
        body = addressed(document, name, operator_namespace)
        if isinstance(body.get("spec"), dict):
            body["spec"] = {**body["spec"], "replicas": 0}  # valid ones deploy: keep the shared fake GPUs free
        status, answer = raw.create(operator_namespace, body, dry_run=False)
        message = answer.get("message", "") if isinstance(answer, dict) else str(answer)
        assert status < 500, f"HTTP {status} for {source}: {message[:2000]}"
        if status == 201:
            created[name] = source
        else:
            tally.other[f"refused by the apiserver's schema ({answer.get('reason')})"] += 1

    one()
    assert len(created) >= 100, f"only {len(created)} objects stored: {tally.report()}"

    def settled() -> list[dict[str, Any]] | None:
        operator.check_alive()
        items = raw.llamas(operator_namespace)
        done = [item for item in items if (item.get("status") or {}).get("phase")]
        return items if len(done) == len(created) else None

    try:
        items = wait_for(f"{len(created)} objects to reach a phase", settled, timeout=300, interval=3)
    except BaseException:
        items = raw.llamas(operator_namespace)
        stuck = [item["metadata"]["name"] for item in items if not (item.get("status") or {}).get("phase")]
        log = [line for line in operator.log_text().splitlines() if any(name in line for name in stuck)]
        print("objects without a phase:", {name: created.get(name) for name in stuck}, *log[-40:], sep="\n")
        raise
    for item in items:
        name, status = item["metadata"]["name"], item["status"]
        codes = error_codes(item)
        tally.other[f"phase {status['phase']}"] += 1
        if not codes:
            assert status["phase"] != "Invalid", (created[name], status)
            tally.accept()
            continue
        assert status["phase"] == "Invalid", (created[name], status)
        reported = [finding["code"] for finding in status.get("findings", []) if finding["severity"] == "error"]
        assert tuple(reported) == codes, (created[name], status)
        assert codes_ok(tuple(reported)), (created[name], status)
        [validated] = [c for c in status["conditions"] if c["type"] == "Validated"]
        assert (validated["status"], validated["reason"]) == ("False", "ValidationFailed"), (created[name], status)
        tally.reject(codes)
    print(f"\n{tally.report()}")
    operator.check_alive()
    assert "Traceback" not in operator.log_text(), operator.log_text()[-6000:]


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def extreme(name: str, **spec: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name},
        "spec": {
            "model": {"name": "meta-llama/Llama-3.1-8B-Instruct"},
            "engine": {"vllmVersion": "0.32.0"},
            "resources": {"gpuProduct": "NVIDIA-H100-80GB-HBM3"},
            "replicas": 0,
        },
    }
    document["spec"].update(spec)
    return document


# Objects the apiserver stores that broke the operator or its children before: (document, the code refusing it).
EXTREMES = [
    # 2,000 and 9,990 levels in the one field that keeps unknown fields (the apiserver's limit is 10,000): the
    # first stopped the operator (kopf could not parse its list), the second also breaks `kubectl get`.
    (extreme("deep-2000", model={"name": "acme/deep", "config": {"inline": nested(2000)}}), "nesting_too_deep"),
    (extreme("deep-9990", model={"name": "acme/deep", "config": {"inline": nested(9990)}}), "nesting_too_deep"),
    # The pod template took them whole: Kubernetes allows 256 KiB of annotations.
    (extreme("huge-annotation", podMetadata={"annotations": {"note": "x" * 400_000}}), "annotations_too_large"),
    # A valid LlamaDeployment name, but not a valid Service name.
    (extreme("dotted.name"), "invalid_name"),
]


def test_deep_and_large_objects_are_refused_with_a_code_and_reported_by_the_operator(
    operator: FuzzOperator, webhook_namespace: str, operator_namespace: str
):
    raw = RawApi(operator.sandbox.api)
    for document, code in EXTREMES:
        name = document["metadata"]["name"]
        status, answer = raw.create(webhook_namespace, document, dry_run=True)
        assert status == 403, (name, status, answer)
        assert DENIED in answer["message"], (name, answer)
        assert code in REFUSAL_CODE.findall(answer["message"]), (name, answer["message"][:2000])
        status, answer = raw.create(operator_namespace, document, dry_run=False)
        assert status == 201, (name, status, str(answer)[:2000])

    def reported() -> dict[str, dict[str, Any]] | None:
        operator.check_alive()
        items = {item["metadata"]["name"]: item.get("status") or {} for item in raw.llamas(operator_namespace)}
        wanted = {document["metadata"]["name"]: items.get(document["metadata"]["name"], {}) for document, _ in EXTREMES}
        return wanted if all(status.get("phase") for status in wanted.values()) else None

    # Straight to the webhook: an UPDATE of a 600 KB object (a 1.2 MB review, past aiohttp's default 1 MiB).
    large = extreme("large", podMetadata={"annotations": {"note": "x" * 600_000}})
    case = Case("large UPDATE", large, review("large-update", "UPDATE", large, large))
    connection = operator.connection()
    status, answer = post_review(connection, dumps(case.review))
    connection.close()
    assert well_formed(status, answer, case)["allowed"] is True  # the spec is unchanged: a metadata update

    statuses = wait_for("the extreme objects to reach a phase", reported, timeout=180, interval=2)
    for document, code in EXTREMES:
        status = statuses[document["metadata"]["name"]]
        assert status["phase"] == "Invalid", status
        assert code in [finding["code"] for finding in status["findings"]], status
    operator.check_alive()
    assert "Traceback" not in operator.log_text(), operator.log_text()[-6000:]
