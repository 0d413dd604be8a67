"""A real `llama-operator run` process against a sandbox: the one way the integration tests and the benchmarks start
an operator.

Each instance watches only the namespaces matching its glob (or those its chart args name), so several operators
(one per test module) never reconcile the same objects. It listens on free loopback ports only (liveness, metrics,
webhook), and its log is kept under the sandbox's log directory as ``operator-<name>.log``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from llamaops_sandbox import processes
from tests.integration.conftest import Sandbox

READY_TIMEOUT_S = 60.0
# What the process listens on; the class owns them (a chart's `--flag=value` is moved to loopback in place).
LISTEN_FLAGS = ("--liveness", "--metrics-address", "--metrics-port", "--webhook-address", "--webhook-port")


@dataclass(frozen=True)
class Webhook:
    """`--webhook url`: the API server calls the process on loopback. The ValidatingWebhookConfiguration is named
    for the run and checks only namespaces labelled ``namespace_label`` (KEY=VALUE), so other tests never meet it."""

    config_name: str
    namespace_label: str
    cert_secret: str | None = None  # NAMESPACE/NAME keeping the CA: replicas sharing it serve under one CA

    def args(self) -> list[str]:
        args = ["--webhook", "url", "--webhook-config-name", self.config_name]
        args += ["--webhook-namespace-label", self.namespace_label]
        return args + (["--webhook-cert-secret", self.cert_secret] if self.cert_secret else [])


class OperatorProcess:
    """``pattern``: the namespaces it watches (None when ``args`` carry the chart's own --namespace flags);
    ``args``: more `llama-operator run` flags, e.g. --peering or a chart's args; ``env``: more environment;
    ``kubeconfig``: whose identity it runs as (default: the sandbox's admin)."""

    def __init__(
        self,
        sandbox: Sandbox,
        pattern: str | None,
        name: str,
        *,
        metrics_port: int | None = None,
        env: dict[str, str] | None = None,
        args: Sequence[str] = (),
        webhook: Webhook | None = None,
        kubeconfig: Path | None = None,
    ) -> None:
        self.sandbox = sandbox
        self.pattern = pattern
        self.extra_env = env or {}
        self.extra_args = list(args)
        self.webhook = webhook
        self.kubeconfig = kubeconfig or sandbox.layout.kubeconfig
        self.log = sandbox.layout.logs / f"operator-{name}.log"
        ports = processes.free_ports(3)
        self.metrics_port = metrics_port or ports[0]
        self.health_port, self.webhook_port = ports[1], ports[2]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def argv(self) -> list[str]:
        listen = {
            "--liveness": f"http://127.0.0.1:{self.health_port}/healthz",
            "--metrics-address": "127.0.0.1",
            "--metrics-port": str(self.metrics_port),
            "--webhook-address": "127.0.0.1",
            "--webhook-port": str(self.webhook_port),
        }
        given = ["--namespace", self.pattern] if self.pattern else []
        given += [*(self.webhook.args() if self.webhook else []), *self.extra_args]
        flags = []
        for arg in given:
            flag = arg.split("=", 1)[0]
            flags.append(f"{flag}={listen.pop(flag)}" if flag in LISTEN_FLAGS and "=" in arg else arg)
        for flag, value in listen.items():
            flags += [flag, value]
        return [sys.executable, "-m", "llama_operator", "run", *flags]

    def start(self, *, wait: bool = True) -> OperatorProcess:
        """Start it; with ``wait``, return once its liveness endpoint answers (``wait_ready`` otherwise)."""
        argv = self.argv()
        # Without the pod's KUBERNETES_* variables, kopf cannot mistake this for an in-cluster run.
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
        env.update(KUBECONFIG=str(self.kubeconfig), **self.extra_env)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            out.write(f"\n=== {time.strftime('%H:%M:%S')} {' '.join(argv)}\n".encode())
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            self.check_alive()
            if processes.probe(f"http://127.0.0.1:{self.health_port}/healthz", None):
                return
            time.sleep(0.2)
        raise RuntimeError(f"operator not healthy within {READY_TIMEOUT_S:.0f}s:\n{processes.tail(self.log)}")

    def check_alive(self) -> None:
        assert self.proc is not None, "not started"
        if self.proc.poll() is not None:
            raise RuntimeError(f"operator exited with {self.proc.returncode}:\n{processes.tail(self.log)}")

    def stop(self, sig: int = signal.SIGTERM, grace: float = 20) -> None:
        processes.end(self.proc, sig, grace=grace)

    def delete_webhook_configuration(self) -> None:
        """In url mode the operator deletes its configuration on exit; this makes sure when it could not."""
        if self.webhook is not None:
            name = self.webhook.config_name
            self.sandbox.try_kubectl("delete", "validatingwebhookconfiguration", name, "--ignore-not-found")

    def __enter__(self) -> OperatorProcess:
        return self.start()

    def close(self) -> None:
        """Stop it and make sure its webhook configuration is gone: the cleanup after a test."""
        try:
            self.stop()
        finally:
            self.delete_webhook_configuration()

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            text: str = response.read().decode()
        return text

    def log_text(self) -> str:
        return Path(self.log).read_text(errors="replace") if self.log.exists() else ""

    def current_log(self) -> str:
        """The log since this process's latest start: the file keeps earlier runs (and their shutdowns) too."""
        return self.log_text().rpartition("\n=== ")[2]
