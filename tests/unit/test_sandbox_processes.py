"""The process edge of the sandbox, on real (tiny) processes."""

import os
import sys
import time
from pathlib import Path

import pytest

from llamaops_sandbox import processes


def test_free_ports_are_distinct_loopback_ports():
    ports = processes.free_ports(10)
    assert len(set(ports)) == 10
    assert all(1024 < p < 65536 for p in ports)


def test_component_that_exits_is_named_with_the_tail_of_its_log(tmp_path: Path):
    log = tmp_path / "boom.log"
    argv = [sys.executable, "-c", "import sys; print('bind: address already in use'); sys.exit(3)"]
    pid = processes.start(argv, log)
    with pytest.raises(processes.SandboxError, match=r"(?s)^boom exited during start-up.*address already in use"):
        processes.wait_healthy("boom", pid, sys.executable, "http://127.0.0.1:9/", None, log, timeout=30)


def test_stop_leaves_no_process_behind(tmp_path: Path):
    # The child ignores SIGTERM, so stop() must fall back to SIGKILL after the grace period.
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
    log = tmp_path / "stubborn.log"
    pid = processes.start([sys.executable, "-c", code], log)
    deadline = time.monotonic() + 30
    while "up" not in log.read_text().splitlines() and time.monotonic() < deadline:
        time.sleep(0.05)
    processes.stop(pid, sys.executable, grace=0.5)
    assert not processes.alive(pid, sys.executable)


def test_alive_rejects_a_pid_running_another_program():
    assert not processes.alive(os.getpid(), "/definitely/not/this/binary")


def test_start_adds_the_components_environment_to_the_sandboxs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LLAMAOPS_TEST_INHERITED", "kept")
    code = "import os; print(repr(os.environ['LLAMAOPS_TEST_INHERITED']), repr(os.environ['WATCH_NAMESPACE']))"
    log = tmp_path / "env.log"
    pid = processes.start([sys.executable, "-c", code], log, {"WATCH_NAMESPACE": ""})
    deadline = time.monotonic() + 30
    while not processes.exited(pid, sys.executable) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.read_text().splitlines()[-1] == "'kept' ''"
