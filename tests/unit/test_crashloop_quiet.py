"""Which pod events the crash-loop handler may skip without an API call (handlers.crashloop._quiet)."""

from __future__ import annotations

from llama_operator.handlers import rechecks
from llama_operator.handlers.crashloop import _quiet, essentials
from llama_operator.health import detect_from_pods
from tests.unit.pod_statuses import backing_off, pod, running, terminated


def test_pods_that_never_crashed_are_quiet() -> None:
    assert _quiet([pod("a", running(0)), pod("b", running(5, ready=False))])
    pending = {"metadata": {"name": "p"}, "status": {"phase": "Pending"}}
    assert _quiet([pending])
    assert _quiet([])


def test_any_crash_restart_or_start_failure_is_looked_at() -> None:
    assert not _quiet([pod("a", running(0)), pod("b", backing_off(2, terminated(0, 3)))])
    assert not _quiet([pod("a", running(9, restarts=1, last=terminated(0, 3)))])
    just_died = {"name": "vllm", "ready": False, "restartCount": 0, "state": {"terminated": terminated(0, 3)}}
    assert not _quiet([pod("a", just_died)])
    config_error = {
        "name": "vllm",
        "ready": False,
        "restartCount": 0,
        "state": {"waiting": {"reason": "CreateContainerConfigError"}},
    }
    assert not _quiet([pod("a", config_error)])


def test_a_crash_loop_being_handled_is_wanted_until_forgotten() -> None:
    key = ("quiet-test", "a")
    rechecks.track(key, {"remediation": {"crashLoop": {"signature": "unknown"}}}, 1)
    assert rechecks.wants(key, rechecks.CRASH_LOOP)
    assert not rechecks.wants(key, rechecks.KNOWN_GOOD)
    rechecks.forget(key)
    assert not rechecks.wants(key, rechecks.CRASH_LOOP)


def test_the_index_keeps_what_detection_reads_and_drops_the_rest() -> None:
    crashed = pod("a", backing_off(3, terminated(0, 3)), annotations={"llamaops.dev/config-hash": "h"})
    crashed["spec"] = {"containers": [{"name": "vllm", "args": ["--model", "x" * 10_000]}]}
    crashed["metadata"]["managedFields"] = [{"manager": "kubelet", "fieldsV1": {"f:status": {}}}]
    kept = essentials(crashed)
    assert "spec" not in kept
    assert "managedFields" not in kept["metadata"]
    assert detect_from_pods([kept]) == detect_from_pods([crashed])
    selected = {"llamaops.dev/config-hash": "h"}
    assert detect_from_pods([kept], annotations=selected) == detect_from_pods([crashed], annotations=selected)
