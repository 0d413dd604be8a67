"""A real `llama-operator run` process against the sandbox, for integration tests.

Each instance watches only the namespaces matching its glob, so several operators (one per test module) never
reconcile the same objects. Its log is kept under the sandbox's log directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from llamaops_sandbox import processes
from tests.integration.conftest import Sandbox

READY_TIMEOUT_S = 60.0


class OperatorProcess:
    def __init__(
        self,
        sandbox: Sandbox,
        pattern: str,
        name: str,
        *,
        metrics_port: int | None = None,
        env: dict[str, str] | None = None,
        args: Sequence[str] = (),
    ) -> None:
        self.sandbox = sandbox
        self.extra_env = env or {}
        self.extra_args = list(args)  # more `llama-operator run` flags, e.g. --peering
        self.pattern = pattern
        self.log = sandbox.layout.logs / f"operator-{name}.log"
        ports = processes.free_ports(2)
        self.metrics_port = metrics_port or ports[0]
        self.health_port = ports[1]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self) -> OperatorProcess:
        argv = [
            sys.executable,
            "-m",
            "llama_operator",
            "run",
            "--namespace",
            self.pattern,
            "--metrics-address",
            "127.0.0.1",
            "--metrics-port",
            str(self.metrics_port),
            "--liveness",
            f"http://127.0.0.1:{self.health_port}/healthz",
            *self.extra_args,
        ]
        env = {**os.environ, "KUBECONFIG": str(self.sandbox.layout.kubeconfig), **self.extra_env}
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            out.write(f"\n=== {time.strftime('%H:%M:%S')} {' '.join(argv)}\n".encode())
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited with {self.proc.returncode}:\n{processes.tail(self.log)}")
            if processes.probe(f"http://127.0.0.1:{self.health_port}/healthz", None):
                return self
            time.sleep(0.2)
        raise RuntimeError(f"operator not healthy within {READY_TIMEOUT_S:.0f}s:\n{processes.tail(self.log)}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        processes.end(self.proc, sig, grace=20)

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            text: str = response.read().decode()
        return text

    def log_text(self) -> str:
        return Path(self.log).read_text(errors="replace")

    def current_log(self) -> str:
        """The log since this process's latest start: the file keeps earlier runs (and their shutdowns) too."""
        return self.log_text().rpartition("\n=== ")[2]
