"""Faults: the operator SIGKILLed at random moments while 100 deployments reconcile, the apiserver restarted under
a working operator, Prometheus down, slow or broken while a crash loop is handled.

The first two run on a private sandbox (its own etcd, apiserver and fake nodes; binaries shared), so restarting
its apiserver disturbs no other test; so does the last, KEDA missing from a cluster (its CRD deleted there, then
installed again). Counts are printed (pytest -s) and named in the assertion messages.
"""

from __future__ import annotations

import copy
import json
import random
import re
import signal
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from llama_operator.render.labels import SPEC_GENERATION_ANNOTATION
from llamaops_sandbox import cluster
from tests.http_stub import serving
from tests.integration.conftest import Sandbox, install_crd, make_namespace, not_found_is_none, wait_for
from tests.integration.fake_crash import crash
from tests.integration.llamas import Llamas, condition, example
from tests.integration.operator_process import OperatorProcess

pytestmark = pytest.mark.integration

N = 100
CYCLES = 20
GPU = {"product": "NVIDIA-H100-80GB-HBM3", "count": 8, "memoryMiB": 81559, "family": "hopper"}


def _log(message: str) -> None:
    print(f"[faults] {message}", file=sys.stderr)


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox of its own with room for N one-GPU deployments (and the rolls between generations)."""
    root = tmp_path_factory.mktemp("faults-cache")
    layout = cluster.private_layout(root)
    shape = root / "shape.yaml"
    shape.write_text(yaml.safe_dump({"pools": [{"name": "faults", "count": 40, "gpu": GPU}]}))
    state, _ = cluster.up(layout, shape, _log)
    api = config.new_client_from_config(config_file=str(layout.kubeconfig))
    try:
        sandbox = Sandbox(layout, state, api)
        install_crd(sandbox)
        yield sandbox
    finally:
        api.close()
        cluster.down(layout)


def _documents(namespace: str, count: int) -> list[dict[str, Any]]:
    base = example("llama31-8b-h100.yaml", namespace)
    return [
        {**copy.deepcopy(base), "metadata": {"name": f"llama-{i:03d}", "namespace": namespace}} for i in range(count)
    ]


def _apply(sandbox: Sandbox, items: list[dict[str, Any]]) -> None:
    listed = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    cluster.kubectl(sandbox.layout, "apply", "--server-side", "-f", "-", stdin=listed)


def _converged(sandbox: Sandbox, namespace: str, count: int) -> list[str]:
    """What is not yet as it should be (empty when all ``count`` are Running at their generation, each with exactly
    its children, and nothing else)."""
    llamas = {o["metadata"]["name"]: o for o in Llamas(sandbox, namespace).listed()}
    problems = [] if len(llamas) == count else [f"{len(llamas)} LlamaDeployments"]
    for name, llama in llamas.items():
        status, generation = llama.get("status") or {}, llama["metadata"]["generation"]
        if status.get("phase") != "Running" or status.get("observedGeneration") != generation:
            problems.append(f"{name}: {status.get('phase')} at {status.get('observedGeneration')}/{generation}")
    problems += _children_problems(sandbox, namespace, llamas)
    return problems


def _children_problems(sandbox: Sandbox, namespace: str, llamas: dict[str, dict[str, Any]]) -> list[str]:
    """Every child owned by exactly one existing LlamaDeployment, one of each kind per LlamaDeployment, the
    Deployment at the owner's generation."""
    apps, core, policy = client.AppsV1Api(sandbox.api), client.CoreV1Api(sandbox.api), client.PolicyV1Api(sandbox.api)
    kinds = {
        "Deployment": apps.list_namespaced_deployment(namespace).items,
        "Service": core.list_namespaced_service(namespace).items,
        "PodDisruptionBudget": policy.list_namespaced_pod_disruption_budget(namespace).items,
    }
    uids = {llama["metadata"]["uid"]: name for name, llama in llamas.items()}
    problems = []
    for kind, children in kinds.items():
        owners: dict[str, int] = {}
        for child in children:
            refs = [r for r in child.metadata.owner_references or [] if r.controller]
            if len(refs) != 1 or refs[0].uid not in uids:
                problems.append(f"orphaned {kind} {child.metadata.name}")
                continue
            owner = uids[refs[0].uid]
            owners[owner] = owners.get(owner, 0) + 1
            if kind == "Deployment":
                rendered = int((child.metadata.annotations or {}).get(SPEC_GENERATION_ANNOTATION, 0))
                if rendered != llamas[owner]["metadata"]["generation"]:
                    problems.append(f"Deployment {owner} renders generation {rendered}")
        problems += [f"{n} {kind}s of {owner}" for owner, n in owners.items() if n != 1]
        problems += [f"no {kind} of {name}" for name in llamas if name not in owners]
    return problems


def test_sigkill_at_random_moments_converges_without_duplicates_orphans_or_lost_status(private: Sandbox):
    namespace = make_namespace(private, "faults-kill")
    operator = OperatorProcess(private, "faults-*", "faults-kill")
    rng = random.Random(20261123)  # fixed: the same moments on every run
    documents = _documents(namespace, N)
    _apply(private, documents)
    kills = []
    for cycle in range(CYCLES):
        if cycle % 5 == 2:
            # New generations while the operator is down or starting: work in flight when it dies.
            for document in rng.sample(documents, 10):
                engine = document["spec"]["engine"]
                engine["maxModelLen"] = 16384 if engine.get("maxModelLen") != 16384 else 32768
            _apply(private, documents)
        operator.start()
        time.sleep(rng.uniform(0.1, 8.0))
        operator.stop(signal.SIGKILL)
        running = sum(
            1 for o in Llamas(private, namespace).listed() if (o.get("status") or {}).get("phase") == "Running"
        )
        kills.append(running)
        _log(f"cycle {cycle + 1}/{CYCLES}: SIGKILL with {running}/{N} Running")
    began = time.monotonic()
    operator.start()
    try:
        wait_for(
            "convergence after 20 SIGKILLs", lambda: not _converged(private, namespace, N), timeout=600, interval=2
        )
        _log(f"converged {time.monotonic() - began:.1f} s after the last restart; Running at each kill: {kills}")
        # Converged and still so a while later: nothing flaps, no child appears or disappears.
        time.sleep(5)
        assert _converged(private, namespace, N) == []
        llamas = Llamas(private, namespace).listed()
        for llama in llamas:
            status = llama["status"]
            types = {c["type"]: c["status"] for c in status["conditions"]}
            name = llama["metadata"]["name"]
            assert types.get("Validated") == "True", (name, types)
            assert types.get("Available") == "True", (name, types)
            assert status.get("endpoint"), name
            assert status.get("effective"), name
        pods = client.CoreV1Api(private.api).list_namespaced_pod(namespace).items
        assert len(pods) == N, f"{len(pods)} pods for {N} one-replica deployments"
        assert "Traceback" not in operator.log_text()  # a fresh file: every one of the 21 runs
    finally:
        operator.stop()
    assert kills[0] < N, "the first kill should land before everything is Running (else nothing was in flight)"


def test_apiserver_restart_mid_reconcile(private: Sandbox):
    namespace = make_namespace(private, "faults-apiserver")
    operator = OperatorProcess(private, "faults-*", "faults-apiserver").start()
    try:
        _apply(private, _documents(namespace, 30))
        time.sleep(1.0)  # the operator is applying children now
        cluster.restart(private.layout, "kube-apiserver", _log, down_s=5)
        assert operator.proc is not None
        assert operator.proc.poll() is None, "the operator exited with the apiserver"
        wait_for("convergence after the restart", lambda: not _converged(private, namespace, 30), timeout=300)
        # The outage hit work in flight (else this tested nothing): calls failed while the apiserver was down.
        assert re.search(r"Failed to establish a new connection|Connection refused|API error", operator.log_text())
        # And it still reconciles new work: kopf's watches reconnected.
        _apply(private, _documents(namespace, 31))
        wait_for(
            "a LlamaDeployment made after the restart", lambda: not _converged(private, namespace, 31), timeout=120
        )
        assert operator.proc.poll() is None
    finally:
        operator.stop()


class _Slow(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        time.sleep(30)  # longer than the operator's timeout: it must give up, not wait

    do_POST = do_GET  # the client queries with POST


class _Broken(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html>502 Bad Gateway</html>"
        self.send_response(502)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *_: Any) -> None:
        pass


@contextmanager
def _prometheus(kind: str) -> Iterator[str]:
    if kind == "down":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        yield f"http://127.0.0.1:{port}"  # nothing listens: connection refused
        return
    with serving(_Slow if kind == "slow" else _Broken) as url:
        yield url


@pytest.mark.parametrize("kind", ["down", "slow", "broken"])
def test_crash_loop_is_handled_from_pod_status_when_prometheus_is(kind: str, sandbox: Sandbox, llama_crd: str):
    """Prometheus is optional to the crash-loop path: unreachable, answering after the timeout, or answering
    garbage, the loop is detected and classified from pod status, and the operator logs why and keeps going."""
    with _prometheus(kind) as url:
        env = {"LLAMAOPS_PROMETHEUS_URL": url, "LLAMAOPS_PROMETHEUS_TIMEOUT": "1s"}
        with OperatorProcess(sandbox, f"noprom-{kind}-*", f"prometheus-{kind}", env=env) as blind:
            llamas = Llamas(sandbox, make_namespace(sandbox, f"noprom-{kind}"))
            try:
                body = example("llama31-8b-h100.yaml", llamas.namespace)
                body["spec"]["podMetadata"] = {"annotations": crash("embedding_oov")}
                llamas.create(body)
                status = llamas.wait_status(
                    "llama31-8b", "crash loop detected", lambda s: s.get("remediation", {}).get("crashLoop")
                )
                loop = status["remediation"]["crashLoop"]
                assert loop["source"] == "PodStatus"
                assert loop["signature"] == "cuda_device_assert_embedding_oov"
                assert condition(status, "CrashLooping")["status"] == "True"
                assert "Prometheus unavailable" in blind.current_log()
                assert blind.proc is not None
                assert blind.proc.poll() is None
                assert "Traceback" not in blind.current_log()
            finally:
                llamas.delete_namespace()  # while its operator runs


KEDA_CRD = "scaledobjects.keda.sh"


def test_autoscaling_without_kedas_crd_says_keda_is_not_installed_then_follows_its_install(private: Sandbox):
    """KEDA missing: nothing is rendered, the condition says how to fix it, the deployment runs at spec.replicas;
    once KEDA's CRD appears the operator renders the ScaledObject without any change to the LlamaDeployment."""
    extensions = client.ApiextensionsV1Api(private.api)
    crd = extensions.read_custom_resource_definition(KEDA_CRD)
    extensions.delete_custom_resource_definition(KEDA_CRD)
    wait_for("KEDA's CRD gone", lambda: not_found_is_none(extensions.read_custom_resource_definition, KEDA_CRD) is None)
    llamas = Llamas(private, make_namespace(private, "faults-keda"))
    env = {"LLAMAOPS_PROMETHEUS_URL": private.prometheus_url}
    operator = OperatorProcess(private, "faults-*", "faults-keda", env=env).start()
    try:
        body = example("llama31-8b-h100.yaml", llamas.namespace)
        body["spec"]["autoscaling"] = {"maxReplicas": 3}
        llamas.create(body)
        name = body["metadata"]["name"]
        found = wait_for(
            "Autoscaling=False/KedaNotInstalled",
            lambda: (c := llamas.condition(name, "Autoscaling")) and c["reason"] == "KedaNotInstalled" and c,
        )
        assert found["status"] == "False"
        assert "Install KEDA" in found["message"]
        status = llamas.wait_phase(name, "Running")
        assert status["autoscaling"]["active"] is False
        assert status["replicas"] == 1
        assert "KedaNotInstalled" in {e.reason for e in llamas.events(name)}

        crd.metadata = client.V1ObjectMeta(name=KEDA_CRD)
        crd.status = None
        extensions.create_custom_resource_definition(crd)
        found = wait_for(
            "Autoscaling=True once KEDA's CRD is installed",
            lambda: (c := llamas.condition(name, "Autoscaling")) and c["status"] == "True" and c,
            timeout=120,
        )
        assert found["reason"] in {"Active", "LimitedByGPUs"}, found
        scaled = client.CustomObjectsApi(private.api).get_namespaced_custom_object(
            "keda.sh", "v1alpha1", llamas.namespace, "scaledobjects", name
        )
        assert scaled["spec"]["maxReplicaCount"] == 3
    finally:
        operator.stop()
        if not_found_is_none(extensions.read_custom_resource_definition, KEDA_CRD) is None:
            crd.metadata = client.V1ObjectMeta(name=KEDA_CRD)
            crd.status = None
            extensions.create_custom_resource_definition(crd)
