"""Operator replicas peering as the chart runs them, for tests/integration/test_ha.py and benchmarks/failover.py.

The peering CRDs, the peering object and the replicas' peering flags all come from `helm template` of the chart
(a namespace pattern, so one ClusterKopfPeering, named for the run), so the test exercises what the chart installs.
Each replica is a real `llama-operator run` (OperatorProcess); its peering identity is ``<hostname>/<pid>``.
"""

from __future__ import annotations

import datetime as dt
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from llamaops_sandbox import cluster
from tests.helm import documents
from tests.integration.conftest import Sandbox, make_namespace, not_found_is_none, wait_for
from tests.integration.llamas import Llamas, llama
from tests.integration.operator_process import OperatorProcess

CHART = Path(__file__).resolve().parents[2] / "charts" / "llama-operator"
PEERING = ("kopf.dev", "v1", "clusterkopfpeerings")
# kopf's INFO lines: a replica standing down for a higher priority, and a standby taking over.
PAUSED = "Pausing operations in favour of"
RESUMED = "Resuming operations after the pause"
RECONCILED = "Handler 'on_llama' succeeded."


def chart_peering(
    sandbox: Sandbox, name: str, pattern: str, extra_values: Sequence[str] = ()
) -> tuple[list[dict[str, Any]], list[str]]:
    """The chart's peering manifests (CRDs, then the ClusterKopfPeering) and the peering args of its pods."""
    values = [
        *extra_values,
        "peering.enabled=true",
        f"peering.name={name}",
        "replicas=2",
        "rbac.clusterWide=true",
        f"watch.namespaces={{{pattern}}}",
        "webhook.enabled=false",
    ]
    argv = ["template", "ha", str(CHART), "--namespace", "default"]
    for value in values:
        argv += ["--set", value]
    argv += ["--show-only", "templates/peering.yaml", "--show-only", "templates/deployment.yaml"]
    docs = documents(sandbox.helm(*argv).stdout)
    (deployment,) = [doc for doc in docs if doc["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = [arg for arg in container["args"] if arg.startswith("--peering")]
    manifests = [doc for doc in docs if doc["kind"] != "Deployment"]
    manifests.sort(key=lambda doc: doc["kind"] != "CustomResourceDefinition")
    return manifests, args


def install_peering(sandbox: Sandbox, manifests: list[dict[str, Any]]) -> None:
    crds = [doc for doc in manifests if doc["kind"] == "CustomResourceDefinition"]
    objects = [doc for doc in manifests if doc["kind"] != "CustomResourceDefinition"]
    for group in (crds, objects):
        cluster.kubectl(
            sandbox.layout, "apply", "--server-side", "--force-conflicts", "-f", "-", stdin=yaml.safe_dump_all(group)
        )
        if group is crds:
            names = [f"crd/{doc['metadata']['name']}" for doc in crds]
            sandbox.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)


def peers(sandbox: Sandbox, name: str) -> dict[str, dict[str, Any]]:
    """The ClusterKopfPeering's status: identity -> {priority, lifetime, lastseen}."""
    body = client.CustomObjectsApi(sandbox.api).get_cluster_custom_object(*PEERING, name)
    status: dict[str, dict[str, Any]] = body.get("status") or {}
    return status


def identity(replica: OperatorProcess) -> str:
    assert replica.proc is not None
    return f"{socket.gethostname()}/{replica.proc.pid}"


def log_count(replica: OperatorProcess, text: str) -> int:
    return replica.log_text().count(text)


def acting(replica: OperatorProcess) -> bool:
    """kopf acts in this replica: it starts paused (mandatory peering) and logs each resume and each pause."""
    text = replica.log_text()
    return text.count(RESUMED) > text.count(PAUSED)


class Pair:
    """Operator replicas of one peering; ``active()`` says which one kopf lets act, from the peering object."""

    def __init__(self, sandbox: Sandbox, run: str, values: Sequence[str] = ()) -> None:
        self.sandbox, self.run = sandbox, run
        self.name = f"ha-{run}"
        self.pattern = f"ha-{run}-*"
        manifests, self.args = chart_peering(sandbox, self.name, self.pattern, values)
        install_peering(sandbox, manifests)
        self.replicas: list[OperatorProcess] = []
        # kopf peers only while a watched namespace exists (it spawns peering per watched namespace, the
        # cluster-wide object included), so the namespace comes first.
        self.namespace = make_namespace(sandbox, self.name)

    def start(self) -> OperatorProcess:
        replica = OperatorProcess(
            self.sandbox, self.pattern, f"ha-{self.run}-{len(self.replicas)}", args=self.args
        ).start()
        self.replicas.append(replica)
        # Listed in the peering object: kopf has started peering (and, if outranked, paused).
        wait_for(f"{identity(replica)} in the peering", lambda: identity(replica) in peers(self.sandbox, self.name))
        return replica

    def live(self) -> list[OperatorProcess]:
        return [r for r in self.replicas if r.proc is not None and r.proc.poll() is None]

    def ranked(self) -> list[OperatorProcess]:
        """Live replicas, highest peering priority first: the first is the one kopf lets act."""
        status = peers(self.sandbox, self.name)
        return sorted(self.live(), key=lambda r: -int(status[identity(r)]["priority"]))

    def settle(self) -> tuple[OperatorProcess, list[OperatorProcess]]:
        """The active replica and the standbys, once kopf in each agrees: waits until the highest-priority replica
        acts and every other one has paused (by kopf's own log lines)."""
        active, *standbys = self.ranked()
        wait_for(f"{identity(active)} to act", lambda: acting(active))
        for standby in standbys:
            wait_for(f"{identity(standby)} to stand by", lambda s=standby: not acting(s))
        return active, standbys

    def cleanup(self) -> None:
        Llamas(self.sandbox, self.namespace).delete_namespace()  # with a replica still running
        for replica in self.replicas:
            replica.stop()
        not_found_is_none(client.CustomObjectsApi(self.sandbox.api).delete_cluster_custom_object, *PEERING, self.name)


@dataclass(frozen=True)
class Failover:
    seconds: float  # from the signal until the new LlamaDeployment is Running
    record_age_s: float  # how old the stopped replica's last keep-alive was at the signal


def failover(
    sandbox: Sandbox,
    pair: Pair,
    name: str,
    meanwhile: Callable[[], None] | None = None,
    sig: int = signal.SIGKILL,
    timeout: float = 120,
) -> Failover:
    """Stop the active replica with ``sig`` (SIGKILL: no goodbye; SIGTERM: kopf removes its record on the way
    out), create a LlamaDeployment at once (after ``meanwhile``, other changes made while no replica acts), and
    time from the signal until it is Running."""
    active, _ = pair.settle()
    assert active.proc is not None
    lastseen = dt.datetime.fromisoformat(peers(sandbox, pair.name)[identity(active)]["lastseen"])
    began = time.monotonic()
    active.proc.send_signal(sig)
    age = (dt.datetime.now(dt.UTC) - lastseen).total_seconds()
    if meanwhile is not None:
        meanwhile()
    llamas = Llamas(sandbox, pair.namespace)
    llamas.create(llama(name, pair.namespace))
    wait_for(f"{name} Running after the failover", lambda: llamas.running(name), timeout, 0.2)
    seconds = time.monotonic() - began
    active.proc.wait(timeout=30)
    return Failover(seconds, age)


@contextmanager
def pair_of_replicas(sandbox: Sandbox, values: Sequence[str] = ()) -> Iterator[Pair]:
    """Replicas of one peering in their own namespace (``ha-<run>-<id>``); ``values`` are more chart values."""
    pair = Pair(sandbox, uuid.uuid4().hex[:6], values)
    try:
        yield pair
    finally:
        pair.cleanup()
