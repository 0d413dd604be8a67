"""Which LlamaDeployments get a periodic second look, and the loop that gives it."""

from __future__ import annotations

import threading

from llama_operator.handlers import rechecks

RUNNING = {
    "phase": "Running",
    "effective": {"args": ["--a"]},
    "lastKnownGood": {"generation": 3, "args": ["--a"]},
}


def test_needs_a_look_while_a_crash_loop_is_handled_but_not_once_exhausted():
    handling = {**RUNNING, "remediation": {"crashLoop": {"signature": "unknown"}}}
    assert rechecks.needs(handling, 3) == {rechecks.CRASH_LOOP}
    exhausted = {**RUNNING, "remediation": {"crashLoop": {"signature": "unknown"}, "exhausted": True}}
    assert rechecks.needs(exhausted, 3) == set()


def test_needs_a_look_until_the_running_configuration_is_last_known_good():
    assert rechecks.needs(RUNNING, 3) == set()
    assert rechecks.needs(RUNNING, 4) == {rechecks.KNOWN_GOOD}
    assert rechecks.needs({**RUNNING, "effective": {"args": ["--b"]}}, 3) == {rechecks.KNOWN_GOOD}
    assert rechecks.needs({**RUNNING, "phase": "Progressing"}, 4) == set()


def test_the_loop_looks_at_tracked_objects_and_survives_a_failing_look(monkeypatch):
    monkeypatch.setattr(rechecks, "INTERVAL_S", 0.01)
    seen: list[tuple[str, str]] = []
    done = threading.Event()

    def look(namespace: str, name: str) -> None:
        seen.append((namespace, name))
        if name == "bad":
            raise RuntimeError("boom")
        if len(seen) >= 4:
            done.set()

    rechecks.track(("ns", "bad"), RUNNING, 9)
    rechecks.track(("ns", "good"), RUNNING, 9)
    stop = threading.Event()
    rechecks.start({rechecks.KNOWN_GOOD: look, rechecks.CRASH_LOOP: look}, stop)
    try:
        assert done.wait(5)
    finally:
        stop.set()
        rechecks.forget(("ns", "bad"))
        rechecks.forget(("ns", "good"))
    assert ("ns", "good") in seen
    assert ("ns", "bad") in seen
    assert rechecks.pending() == {}
