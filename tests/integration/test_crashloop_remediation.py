"""The operator's crash-loop detection and remediation in the sandbox: KWOK's crash stage replays the real CUDA
failure text, a real operator process detects, classifies and repairs, and the deployment serves again.

The crash stage itself (restarts, message, back-off, without an operator) is test_kwok_crash_stage's."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import Sandbox, wait_for
from tests.integration.fake_crash import UPSTREAM_083, crash
from tests.integration.llamas import Llamas, condition, example, watched_namespace
from tests.integration.operator_process import OperatorProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def operator(sandbox: Sandbox, llama_crd: str) -> Iterator[OperatorProcess]:
    env = {"LLAMAOPS_PROMETHEUS_URL": sandbox.prometheus_url, "LLAMAOPS_PROMETHEUS_TIMEOUT": "2s"}
    with OperatorProcess(sandbox, "crash-*", "crashloop", env=env) as process:
        yield process


@pytest.fixture
def llamas(sandbox: Sandbox, operator: OperatorProcess, request: pytest.FixtureRequest) -> Iterator[Llamas]:
    with watched_namespace(sandbox, "crash", request) as llamas:
        yield llamas


def recovered(llamas: Llamas, name: str) -> dict[str, Any]:
    """The status once ``name`` serves again: Running at its generation with CrashLooping False."""
    status: dict[str, Any] = wait_for(
        "recovered: Running with CrashLooping=False",
        lambda: (
            (s := llamas.wait_phase(name, "Running", timeout=120))
            and condition(s, "CrashLooping")["status"] == "False"
            and s
        ),
        timeout=120,
    )
    return status


def image_of(llamas: Llamas, name: str) -> tuple[str, list[str]]:
    deployment = llamas.deployment(name)
    assert deployment is not None
    container = deployment.spec.template.spec.containers[0]
    return container.image, list(container.args)


def test_known_block_table_crash_is_detected_remedied_and_serves_again(llamas: Llamas):
    body = example("llama4-scout.yaml", llamas.namespace)
    body["spec"]["engine"].update({"vllmVersion": "0.8.3", "patched": False, "maxModelLen": 12000})
    body["spec"]["validation"] = {"knownIssues": "Warn"}
    # Crashes like vllm#16274 while the upstream 0.8.3 image runs.
    body["spec"]["podMetadata"] = {"annotations": crash("block_table_gather", when=UPSTREAM_083)}
    llamas.create(body)

    looping = llamas.wait_status("llama4-scout", "CrashLooping detected", lambda s: s.get("remediations"))
    (record,) = looping["remediations"][:1]
    assert record["signature"] == "cuda_device_assert_index_oob"
    assert record["knownIssue"] == "chunked_local_attention_block_table_overrun"
    assert record["action"] == "SwitchToPatchedImage"
    assert UPSTREAM_083 in record["before"]

    status = recovered(llamas, "llama4-scout")
    assert condition(status, "Available")["status"] == "True"
    image, _args = image_of(llamas, "llama4-scout")
    assert image == "ghcr.io/llamaops/vllm:0.8.3-llamaops"
    assert status["effective"]["image"] == image
    # The user's spec is never rewritten: the repair lives in status.
    spec = llamas.get("llama4-scout")["spec"]
    assert spec["engine"]["patched"] is False
    assert status["overrides"]["patched"] is True
    assert status["remediations"][0]["result"] == "Recovered"
    reasons = {e.reason for e in llamas.events("llama4-scout")}
    assert {"CrashLoopDetected", "Remediated"} & reasons, reasons


def test_unknown_crash_rolls_back_to_last_known_good(llamas: Llamas):
    body = example("llama31-8b-h100.yaml", llamas.namespace)
    llamas.create(body)
    llamas.wait_phase("llama31-8b", "Running")
    good = llamas.wait_status("llama31-8b", "lastKnownGood", lambda s: s.get("lastKnownGood"), 60)["lastKnownGood"]
    assert "131072" in good["args"]

    # A new generation that segfaults (no known issue) only with its new context length.
    llamas.patch_spec(
        "llama31-8b",
        {
            "engine": {"maxModelLen": 65536},
            "podMetadata": {
                "annotations": crash(
                    "segfault", when="--max-model-len 65536", message="Segmentation fault (core dumped)"
                )
            },
        },
    )
    llamas.wait_status(
        "llama31-8b", "rollback", lambda s: any(r["action"] == "Rollback" for r in s.get("remediations", []))
    )
    status = recovered(llamas, "llama31-8b")
    _, args = image_of(llamas, "llama31-8b")
    assert args[args.index("--max-model-len") + 1] == "131072"
    assert llamas.get("llama31-8b")["spec"]["engine"]["maxModelLen"] == 65536
    record = next(r for r in status["remediations"] if r["action"] == "Rollback")
    assert record["signature"] == "unknown"
    assert "65536" in record["before"]
    assert "131072" in record["after"]


def test_exhausted_attempts_fail_and_are_left_alone(llamas: Llamas):
    body = example("llama31-8b-h100.yaml", llamas.namespace)
    body["spec"]["remediation"] = {"policy": "Auto", "maxAttempts": 1, "window": "1h"}
    llamas.create(body)
    llamas.wait_phase("llama31-8b", "Running")
    llamas.wait_status("llama31-8b", "lastKnownGood", lambda s: s.get("lastKnownGood"), 60)
    # Crashes whatever runs: the one allowed rollback cannot help.
    llamas.patch_spec(
        "llama31-8b",
        {
            "engine": {"maxModelLen": 65536},
            "podMetadata": {"annotations": crash("segfault", message="Segmentation fault")},
        },
    )
    status = llamas.wait_phase("llama31-8b", "Failed", timeout=180)
    crash_looping = condition(status, "CrashLooping")
    assert crash_looping["status"] == "True"
    assert crash_looping["reason"] == "RemediationExhausted"
    assert len(status["remediations"]) == 1
    assert status["remediation"]["exhausted"] is True

    deployment = llamas.deployment("llama31-8b")
    assert deployment is not None
    before = (deployment.metadata.generation, deployment.spec.template.metadata.annotations)
    time.sleep(15)  # more crashes happen; nothing more is changed
    after = llamas.deployment("llama31-8b")
    assert after is not None
    assert (after.metadata.generation, after.spec.template.metadata.annotations) == before
    assert len(llamas.status("llama31-8b")["remediations"]) == 1
    assert llamas.status("llama31-8b")["phase"] == "Failed"
