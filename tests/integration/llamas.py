"""LlamaDeployments in the sandbox, for the integration tests and the benchmarks that measure there: the example
manifests, a small one-GPU body, and `Llamas`, the reads, writes and waits a test does in one namespace."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.integration.conftest import Sandbox, make_namespace, not_found_is_none, wait_for

# The API as the CRD in crds/ declares it, spelled out here rather than imported, so a rename in the operator
# breaks the tests instead of moving them along.
GROUP, VERSION, PLURAL = "llamaops.dev", "v1alpha1", "llamadeployments"
LWS = ("leaderworkerset.x-k8s.io", "v1", "leaderworkersets")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example(name: str, namespace: str | None) -> dict[str, Any]:
    """examples/<name> placed in ``namespace`` (None: without one, for `kubectl apply -n`)."""
    document: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text(encoding="utf-8"))
    if namespace is None:
        document["metadata"].pop("namespace", None)
    else:
        document["metadata"]["namespace"] = namespace
    return document


def llama(name: str, namespace: str, max_num_seqs: int = 64) -> dict[str, Any]:
    """Llama-3.1-8B on one fake H100: small enough for several alongside the other tests."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LlamaDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"name": "meta-llama/Llama-3.1-8B-Instruct"},
            "engine": {"vllmVersion": "0.32.0", "maxModelLen": 131072, "maxNumSeqs": max_num_seqs},
            "resources": {"gpuProduct": "NVIDIA-H100-80GB-HBM3"},
            "replicas": 1,
        },
    }


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    """The status condition of ``type_`` (a test that expects it fails with StopIteration when it is missing)."""
    return next(c for c in status.get("conditions", []) if c["type"] == type_)


class Llamas:
    """The LlamaDeployments of one namespace and what the operator made of them."""

    def __init__(self, sandbox: Sandbox, namespace: str, phase_timeout: float = 90) -> None:
        self.sandbox = sandbox
        self.api = client.CustomObjectsApi(sandbox.api)
        self.apps = client.AppsV1Api(sandbox.api)
        self.core = client.CoreV1Api(sandbox.api)
        self.policy = client.PolicyV1Api(sandbox.api)
        self.namespace = namespace
        self.phase_timeout = phase_timeout

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = self.api.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)
        return created

    def get(self, name: str) -> dict[str, Any]:
        got: dict[str, Any] = self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        return got

    def listed(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.api.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)[
            "items"
        ]
        return items

    def delete(self, name: str) -> None:
        self.api.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.api.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name, {"spec": spec})

    def status(self, name: str) -> dict[str, Any]:
        return self.get(name).get("status") or {}

    def condition(self, name: str, type_: str) -> dict[str, Any] | None:
        return next((c for c in self.status(name).get("conditions", []) if c["type"] == type_), None)

    def running(self, name: str) -> bool:
        """Reconciled to Running at its current generation (status written by an operator); False while absent."""
        body = not_found_is_none(self.get, name)
        if body is None:
            return False
        status = body.get("status") or {}
        return bool(
            status.get("phase") == "Running" and status.get("observedGeneration") == body["metadata"]["generation"]
        )

    def wait_phase(self, name: str, phase: str, timeout: float | None = None) -> dict[str, Any]:
        """The status once ``phase`` is reached at the current generation; a timeout says what was seen last."""
        seen: dict[str, Any] = {}

        def current() -> dict[str, Any] | None:
            status = self.status(name)
            generation = self.get(name)["metadata"]["generation"]
            seen.update(status=status, generation=generation)
            ok = status.get("phase") == phase and status.get("observedGeneration") == generation
            return status if ok else None

        try:
            status: dict[str, Any] = wait_for(
                f"{name} phase {phase}", current, timeout=self.phase_timeout if timeout is None else timeout
            )
        except pytest.fail.Exception:
            pytest.fail(f"{name} never reached phase {phase}: {self._diagnosis(seen)}")
        return status

    def _diagnosis(self, seen: dict[str, Any]) -> str:
        """What a timed-out wait saw last: the phase, the conditions that are not as hoped, and where the pods are
        (a Pending pod names the scheduler's reason), so a failure says why without a rerun."""
        status = seen.get("status") or {}
        conditions = "; ".join(
            f"{c.get('type')}={c.get('status')} ({c.get('reason')}: {c.get('message', '')[:160]})"
            for c in status.get("conditions", [])
        )
        pods, pending = [], False
        for pod in self.core.list_namespaced_pod(self.namespace).items:
            waiting = [c.message for c in pod.status.conditions or [] if c.status != "True" and c.message]
            containers = [
                f"{c.name} restarts={c.restart_count} "
                + ",".join(k for k in ("running", "waiting", "terminated") if getattr(c.state, k, None))
                for c in pod.status.container_statuses or []
            ]
            pods.append(f"{pod.metadata.name} {pod.status.phase} on {pod.spec.node_name} {waiting[:1]} {containers}")
            pending = pending or pod.status.phase == "Pending"
        holders = f"; GPUs held elsewhere: {self._gpu_holders() or 'none'}" if pending else ""
        return (
            f"phase {status.get('phase')!r}, observedGeneration {status.get('observedGeneration')} of "
            f"{seen.get('generation')}; conditions: {conditions or 'none'}; pods: {pods or 'none'}{holders}"
        )

    def _gpu_holders(self) -> list[str]:
        """Pods of other namespaces that hold GPUs on a node: what a Pending pod of this test waits behind."""
        held = []
        for pod in self.core.list_pod_for_all_namespaces(field_selector="spec.nodeName!=").items:
            if pod.metadata.namespace == self.namespace or pod.status.phase in ("Succeeded", "Failed"):
                continue
            gpus = sum(
                int((c.resources.requests or {}).get("nvidia.com/gpu", 0) if c.resources else 0)
                for c in pod.spec.containers
            )
            if gpus:
                gone = " (deleting)" if pod.metadata.deletion_timestamp else ""
                held.append(f"{pod.metadata.namespace}/{pod.metadata.name} {gpus} on {pod.spec.node_name}{gone}")
        return held

    def wait_status(
        self, name: str, what: str, predicate: Callable[[dict[str, Any]], Any], timeout: float = 120
    ) -> dict[str, Any]:
        """The status once ``predicate`` holds for it; a timeout says what was seen last (as ``wait_phase``)."""
        seen: dict[str, Any] = {}

        def current() -> dict[str, Any] | None:
            status = self.status(name)
            seen.update(status=status, generation=self.get(name)["metadata"]["generation"])
            return status if predicate(status) else None

        try:
            status: dict[str, Any] = wait_for(f"{name}: {what}", current, timeout=timeout)
        except pytest.fail.Exception:
            pytest.fail(f"{name}: {what} not seen within {timeout:.0f}s: {self._diagnosis(seen)}")
        return status

    def deployment(self, name: str) -> client.V1Deployment | None:
        return not_found_is_none(self.apps.read_namespaced_deployment, name, self.namespace)

    def lws(self, name: str) -> dict[str, Any] | None:
        """The LeaderWorkerSet of a multi-node replica."""
        got: dict[str, Any] | None = not_found_is_none(
            self.api.get_namespaced_custom_object, *LWS[:2], self.namespace, LWS[2], name
        )
        return got

    def pods(self, name: str) -> list[client.V1Pod]:
        return list(
            self.core.list_namespaced_pod(self.namespace, label_selector=f"llamaops.dev/deployment={name}").items
        )

    def events(self, name: str) -> list[client.CoreV1Event]:
        events = self.core.list_namespaced_event(self.namespace, field_selector=f"involvedObject.name={name}").items
        return [e for e in events if e.involved_object.kind == "LlamaDeployment"]

    def delete_namespace(self) -> None:
        """Delete the LlamaDeployments while their operator still runs (it holds a finalizer on them for its
        timers), then the namespace, so no test leaves GPUs taken."""
        for item in self.listed():
            self.delete(item["metadata"]["name"])
        wait_for("LlamaDeployments deleted", lambda: not self.listed(), timeout=180)
        self.core.delete_namespace(self.namespace)
        # The GPUs are free only when the pods are gone: the next test may need the same node.
        wait_for(
            f"pods of {self.namespace} gone",
            lambda: not self.core.list_namespaced_pod(self.namespace).items,
            timeout=120,
        )


@contextmanager
def watched_namespace(
    sandbox: Sandbox, prefix: str, request: pytest.FixtureRequest, phase_timeout: float = 90
) -> Iterator[Llamas]:
    """A namespace ``<prefix>-<test name>`` for one test, which an operator watching ``<prefix>-*`` reconciles;
    emptied while that operator still runs, then deleted (Llamas.delete_namespace)."""
    test = request.node.name.lower().replace("_", "-").removeprefix("test-")
    llamas = Llamas(sandbox, make_namespace(sandbox, f"{prefix}-{test}"), phase_timeout)
    try:
        yield llamas
    finally:
        llamas.delete_namespace()
