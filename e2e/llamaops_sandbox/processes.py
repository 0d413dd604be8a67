"""Starting, probing and stopping the sandbox's processes (the I/O edge; decisions live in config.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

STOP_GRACE_S = 10.0  # etcd and the apiserver shut down cleanly well within this


class SandboxError(RuntimeError):
    """A component failed; the message names it and carries the tail of its log."""


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports: all sockets are held open until every port is picked."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def start(argv: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    """Start a detached process (own session, so `down` can signal its whole group) logging to `log`, with `env`
    on top of this process's environment."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(  # noqa: S603 - argv comes from sandbox.config, not from input
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **env} if env else None,
        )
    return proc.pid


def _proc_field(pid: int, name: str) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return None


def command_line(pid: int) -> list[str] | None:
    """The argv of a running process, or None when there is none."""
    cmdline = _proc_field(pid, "cmdline")
    return [part.decode(errors="replace") for part in cmdline.split(b"\0") if part] if cmdline else None


def alive(pid: int, executable: str) -> bool:
    """True while `pid` runs `executable` (guards against a recycled pid) and is not a zombie."""
    cmdline = _proc_field(pid, "cmdline")
    stat = _proc_field(pid, "stat")
    if not cmdline or not stat:
        return False
    state = stat.rsplit(b")", 1)[-1].split()[0]
    return state != b"Z" and cmdline.split(b"\0", 1)[0].decode(errors="replace") == executable


def exited(pid: int, executable: str) -> bool:
    """True once `pid` has ended. For our own child this asks the kernel (and reaps it): /proc can briefly show a
    just-started child oddly; for anyone else's process it falls back to `alive`."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return not alive(pid, executable)
    return done == pid


def _reap(pid: int) -> None:
    # Only our own children can be reaped; others are reaped by their parent (init).
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def end(process: subprocess.Popen[Any] | None, sig: int = signal.SIGTERM, grace: float = 30.0) -> None:
    """Stop a child process this process started (an operator under test): ``sig``, then SIGKILL after ``grace``
    seconds; reaped either way. Nothing when it is not running."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def stop(pid: int, executable: str, grace: float = STOP_GRACE_S) -> None:
    """SIGTERM the process group, SIGKILL it after a grace period; returns once the process is gone."""
    if not alive(pid, executable):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(pid)
        if not alive(pid, executable):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    while alive(pid, executable):
        _reap(pid)
        time.sleep(0.05)


def tail(log: Path, lines: int = 25) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def probe(url: str, context: ssl.SSLContext | None, timeout: float = 2.0) -> bool:
    """True when `url` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:  # noqa: S310 - loopback
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_healthy(
    name: str, pid: int, executable: str, url: str, context: ssl.SSLContext | None, log: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe(url, context):
            return
        if exited(pid, executable):
            raise SandboxError(f"{name} exited during start-up; last lines of {log}:\n{tail(log)}")
        time.sleep(0.2)
    raise SandboxError(
        f"{name} did not become healthy at {url} within {timeout:.0f}s; last lines of {log}:\n{tail(log)}"
    )
