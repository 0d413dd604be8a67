"""The Capacity condition follows the GPU nodes (handlers.capacity): after a change of the node view, only objects
whose verdict differs from their status are refreshed, and no request lists nodes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from llama_operator.api import LlamaDeploymentSpec
from llama_operator.handlers import capacity, nodes, reconcile
from llama_operator.knowledge import load_knowledge
from llama_operator.knowledge.observed import NodeGpus, node_gpus
from llama_operator.planning.capacity import capacity_of

H200 = "NVIDIA-H200"
KEY = ("serving", "maverick")


def h200(name: str) -> NodeGpus:
    labels = {"nvidia.com/gpu.product": H200, "nvidia.com/gpu.memory": "143771", "nvidia.com/gpu.count": "8"}
    found = node_gpus(name, labels, {"nvidia.com/gpu": "8"})
    assert found is not None
    return found


SPEC: dict[str, Any] = {
    "model": {"name": "meta-llama/Llama-3.1-8B-Instruct"},
    "engine": {"vllmVersion": "0.32.0", "maxModelLen": 8192, "tensorParallelSize": 8},
    "resources": {"gpuProduct": H200},
    "replicas": 2,
}


def body(view: nodes.NodeView, generation: int = 3, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """The object as a reconcile with ``view`` wrote it: its Capacity condition for ``generation``."""
    spec = spec or SPEC
    verdict = capacity_of(LlamaDeploymentSpec.model_validate(spec), view.knowledge(load_knowledge())).verdict
    condition = {
        "type": "Capacity",
        "status": verdict.status,
        "reason": verdict.reason,
        "message": verdict.message,
        "observedGeneration": generation,
    }
    return {
        "metadata": {"namespace": KEY[0], "name": KEY[1], "generation": generation},
        "spec": spec,
        "status": {"conditions": [{"type": "Validated", "status": "True"}, condition]},
    }


@pytest.fixture(autouse=True)
def clean() -> Iterator[None]:
    yield
    for key in list(capacity._tracked):
        capacity.forget(key)


@pytest.fixture
def view() -> nodes.NodeView:
    fresh = nodes.NodeView()
    fresh.replace([h200("h200-0")])
    return fresh


def test_the_condition_of_this_generation_is_what_is_compared(view: nodes.NodeView) -> None:
    written = body(view)
    assert capacity.written(written["status"], 3) == (
        "False",
        "InsufficientAllocatableGPUs",
        written["status"]["conditions"][1]["message"],
    )
    assert capacity.written(written["status"], 4) is None  # a newer spec: its reconcile writes it
    assert capacity.written({"conditions": [{"type": "Validated"}]}, 3) is None


def test_a_node_change_refreshes_only_what_it_changes(view: nodes.NodeView) -> None:
    follower = capacity.Follower(view)
    capacity.track(KEY, body(view))
    other = ("serving", "small")
    small = {**SPEC, "replicas": 1}
    capacity.track(
        other, {**body(view, spec=small), "metadata": {"namespace": "serving", "name": "small", "generation": 3}}
    )
    assert follower.round() == []  # as written
    view.put("h200-1", h200("h200-1"))  # a second H200 node: room for both replicas
    assert follower.round() == [KEY]  # the one-replica object stays True, with the same message
    assert follower.round() == []  # nothing moved since
    capacity.track(KEY, body(view))  # the refresh's status comes back through the watch
    view.put("h200-1", h200("h200-1"))  # the same labels again: no new version
    assert follower.round() == []
    capacity.forget(KEY)
    view.put("h200-1", None)
    assert follower.round() == []


def test_an_object_written_from_an_older_view_is_caught(view: nodes.NodeView) -> None:
    follower = capacity.Follower(view)
    stale = body(view)  # planned with one node
    view.put("h200-1", h200("h200-1"))
    assert follower.round() == []  # nothing tracked yet
    capacity.track(KEY, stale)  # its status arrives after the view moved
    assert follower.round() == [KEY]


def test_objects_without_a_capacity_condition_are_not_followed(view: nodes.NodeView) -> None:
    follower = capacity.Follower(view)
    invalid = body(view)
    invalid["status"]["conditions"] = invalid["status"]["conditions"][:1]  # an invalid spec is not judged
    capacity.track(KEY, invalid)
    view.put("h200-1", h200("h200-1"))
    assert follower.round() == []
    garbled = body(view)
    garbled["spec"] = {"model": {}}
    capacity.track(KEY, garbled)
    assert KEY not in capacity._tracked


def test_the_thread_refreshes_after_a_node_change(view: nodes.NodeView, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capacity, "INTERVAL_S", 0.01)
    refreshed: list[tuple[str, str]] = []
    done = threading.Event()

    def refresh(namespace: str, name: str) -> None:
        refreshed.append((namespace, name))
        done.set()

    stop = threading.Event()
    capacity.track(KEY, body(view))
    thread = capacity.start(refresh, stop, lambda namespace: namespace == "serving", view)
    try:
        time.sleep(0.05)
        assert refreshed == []
        view.put("h200-1", h200("h200-1"))
        assert done.wait(5)
    finally:
        stop.set()
        thread.join(5)
    assert refreshed[0] == KEY


def test_a_standby_replica_refreshes_nothing(view: nodes.NodeView, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capacity, "INTERVAL_S", 0.01)
    refreshed: list[tuple[str, str]] = []
    stop = threading.Event()
    capacity.track(KEY, body(view))
    view.put("h200-1", h200("h200-1"))
    thread = capacity.start(lambda ns, name: refreshed.append((ns, name)), stop, lambda _ns: False, view)
    time.sleep(0.1)
    stop.set()
    thread.join(5)
    assert refreshed == []


def test_llamadeployment_events_track_and_forget(view: nodes.NodeView) -> None:
    written = body(view)
    reconcile.on_llama_event(event={"type": "MODIFIED", "object": written})
    assert capacity._tracked[KEY].generation == 3
    reconcile.on_llama_event(event={"type": "DELETED", "object": written})
    assert KEY not in capacity._tracked
