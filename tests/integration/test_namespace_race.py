"""Namespaces made while the operator starts are reconciled (handlers/namespace_listing.py says why they were not).

kopf lists the namespaces matching its `--namespace` glob, then lists them again to start its watch, and ignored
what the second list added: two crash-loop tests of CI once waited 120 s for an operator that never saw the
namespace made a second after its start. Here namespaces are made every few tenths of a second from the moment the
process starts, so some fall between kopf's two lists, and each must get a status from the operator."""

from __future__ import annotations

import time
import uuid

import pytest
from kubernetes import client

from tests.integration.conftest import Sandbox, wait_for
from tests.integration.llamas import Llamas, example
from tests.integration.operator_process import OperatorProcess

pytestmark = pytest.mark.integration

MAKING_S = 8.0


def unreconciled(made: list[Llamas]) -> list[str]:
    return [each.namespace for each in made if each.status("llama31-8b").get("observedGeneration") != 1]


def test_namespaces_made_while_the_operator_starts_are_reconciled(sandbox: Sandbox, llama_crd: str):
    core = client.CoreV1Api(sandbox.api)
    prefix = f"nsrace-{uuid.uuid4().hex[:4]}"
    made: list[Llamas] = []
    operator = OperatorProcess(sandbox, f"{prefix}-*", "nsrace")
    operator.start(wait=False)
    try:
        deadline = time.monotonic() + MAKING_S
        while time.monotonic() < deadline:
            name = f"{prefix}-{len(made):02d}"
            core.create_namespace({"metadata": {"name": name, "labels": {"llamaops.dev/test": "integration"}}})
            llamas = Llamas(sandbox, name)
            body = example("llama31-8b-h100.yaml", name)
            body["spec"]["engine"]["tensorParallelSize"] = 5  # refused by the planner: a status, and no GPUs taken
            llamas.create(body)
            made.append(llamas)
            time.sleep(0.2)
        operator.wait_ready()
        wait_for("every namespace's LlamaDeployment reconciled", lambda: not unreconciled(made), timeout=60)
    except pytest.fail.Exception:
        pytest.fail(f"never reconciled, of {len(made)} namespaces made during startup: {unreconciled(made)}")
    finally:
        try:
            for llamas in made:
                llamas.delete_namespace()
        finally:
            operator.close()
