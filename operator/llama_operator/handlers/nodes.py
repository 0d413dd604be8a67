"""The GPU nodes the cluster has, kept current by one list-and-watch thread (the edge of knowledge.observed).

The admission webhook and reconcile plan with ``knowledge()``: the catalog, plus the GPUs of labelled nodes whose
product the catalog lacks, planned from their ``nvidia.com/gpu.memory`` label, plus the nodes themselves (what each
can allocate, its labels and taints) for the capacity check (planning.capacity). A request never lists nodes; the
view is a cache fed by a watch of nodes carrying ``nvidia.com/gpu.product`` (a label selector, so the API server
sends only GPU nodes). Without the right to list nodes the view stays unlisted: planning is the catalog's alone and
capacity is not judged (an empty view is no evidence that the cluster has no GPUs).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from llama_operator.handlers import kube
from llama_operator.knowledge import Knowledge, load_knowledge
from llama_operator.knowledge.observed import PRODUCT_LABEL, NodeGpus, ObservedNodes, Taint, node_gpus, observed_gpus

log = logging.getLogger(__name__)
# A watch is reopened (after a fresh list) this often; the API server ends watches on its own after 5-10 min.
WATCH_S = 300
RETRY_S = 5.0
# Without RBAC for nodes, look again this rarely (a chart upgrade may grant it).
FORBIDDEN_RETRY_S = 300.0


class NodeView:
    """GPU nodes by name, and the knowledge planned with them (rebuilt only after a node's GPUs change).

    ``listed``: the nodes were listed at least once, so the view is the cluster's (until then, and without the
    right to list nodes, capacity is not judged). ``settled`` is set after the first attempt, listed or not: the
    operator's startup waits for it briefly so its first reconciles already see the nodes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nodes: dict[str, NodeGpus] = {}
        self._version = 0
        self._listed = False
        self._planned: tuple[Knowledge, int, Knowledge] | None = None  # (base, version, base with the nodes' GPUs)
        self.settled = threading.Event()

    @property
    def version(self) -> int:
        """Changes whenever what the view holds changes (a node's GPUs, labels, taints; the first list)."""
        with self._lock:
            return self._version

    def replace(self, nodes: Iterable[NodeGpus]) -> None:
        fresh = {node.node: node for node in nodes}
        with self._lock:
            if fresh != self._nodes or not self._listed:
                self._nodes = fresh
                self._listed = True
                self._version += 1
        self.settled.set()

    def put(self, name: str, node: NodeGpus | None) -> None:
        """A node's GPUs as now labelled; None when it is gone or no longer labelled."""
        with self._lock:
            if self._nodes.get(name) == node:
                return
            if node is None:
                self._nodes.pop(name, None)
            else:
                self._nodes[name] = node
            self._version += 1

    def nodes(self) -> tuple[NodeGpus, ...]:
        with self._lock:
            return tuple(self._nodes.values())

    def knowledge(self, base: Knowledge) -> Knowledge:
        with self._lock:
            cached, version = self._planned, self._version
            if cached is not None and cached[0] is base and cached[1] == version:
                return cached[2]
            nodes = tuple(self._nodes.values())
            listed = self._listed
        planned = base.with_observed_gpus(observed_gpus(nodes))
        if listed:
            planned = planned.with_nodes(ObservedNodes.of(nodes))
        with self._lock:
            self._planned = (base, version, planned)
        return planned


VIEW = NodeView()


def knowledge() -> Knowledge:
    """What admission and reconcile plan with: the packaged catalogs and the GPUs of the cluster's nodes."""
    return VIEW.knowledge(load_knowledge())


def _node(item: Mapping[str, Any]) -> tuple[str, NodeGpus | None]:
    """A node as the API server sends it (JSON): its name and GPUs."""
    meta, spec, status = item.get("metadata") or {}, item.get("spec") or {}, item.get("status") or {}
    name = str(meta.get("name", ""))
    labels: Mapping[str, str] = meta.get("labels") or {}
    allocatable: Mapping[str, str] = status.get("allocatable") or {}
    taints = [
        Taint(str(t.get("key", "")), str(t.get("value") or ""), str(t.get("effect", "")))
        for t in spec.get("taints") or []
    ]
    return name, node_gpus(name, labels, allocatable, taints, bool(spec.get("unschedulable")))


def view_of(items: Iterable[Mapping[str, Any]]) -> NodeView:
    """A view of these nodes (the API server's JSON), built as the watch builds it: a one-off look, e.g. for a test
    that decides an admission request as the webhook does."""
    view = NodeView()
    view.replace(node for node in (_node(item)[1] for item in items) if node is not None)
    return view


def as_json(list_call: Callable[..., Any]) -> Callable[..., Any]:
    """``list_call`` for kubernetes.watch.Watch, which builds each event's object as the model the call's
    docstring names: this one names none, so the objects stay the API server's JSON."""

    def call(**kwargs: Any) -> Any:
        return list_call(**kwargs)

    return call


def _sync(core: client.CoreV1Api, view: NodeView, stop: threading.Event) -> bool:
    """One list, then its watch until the API server or WATCH_S ends it; False when the watch reported an error
    (e.g. 410 Gone: list afresh after a pause).

    Nodes are read as JSON, not as the client's models: a node's status changes with every kubelet heartbeat, and
    deserializing each into a V1Node was the operator's busiest work when idle (about 1% of a core for 1,000 nodes,
    benchmarks/fleet.py), and 1,000 of them at once its largest allocation at startup."""
    response: Any = core.list_node(  # with _preload_content=False: the urllib3 response, not a V1NodeList
        label_selector=PRODUCT_LABEL, _request_timeout=kube.TIMEOUT_S, _preload_content=False
    )
    listed = json.loads(response.data)
    view.replace(node for node in (_node(item)[1] for item in listed.get("items") or []) if node is not None)
    version = (listed.get("metadata") or {}).get("resourceVersion")
    del listed

    stream = watch.Watch()  # type: ignore[no-untyped-call]
    events = stream.stream(  # type: ignore[no-untyped-call]
        as_json(core.list_node),
        label_selector=PRODUCT_LABEL,
        resource_version=version,
        timeout_seconds=WATCH_S,
        _request_timeout=WATCH_S + kube.TIMEOUT_S,  # a connection that goes silent ends too
    )
    for event in events:
        if stop.is_set():
            stream.stop()  # type: ignore[no-untyped-call]
            return True
        if event["type"] == "ERROR":
            return False
        name, node = _node(event["object"])
        # A node that loses the label leaves the selector: the watch reports it DELETED.
        view.put(name, None if event["type"] == "DELETED" else node)
    return True


def _run(view: NodeView, stop: threading.Event) -> None:
    core = client.CoreV1Api(kube.api())
    forbidden_logged = False
    while not stop.is_set():
        wait = RETRY_S
        try:
            if _sync(core, view, stop):
                continue
        except ApiException as error:
            view.settled.set()  # not listed: nothing to wait for
            if error.status in (401, 403):
                wait = FORBIDDEN_RETRY_S
                if not forbidden_logged:
                    log.warning(
                        "cannot list nodes (%s): GPU products outside the catalog are not planned from node labels; "
                        "grant the operator list and watch on nodes",
                        error.status,
                    )
                    forbidden_logged = True
            else:
                log.warning("watching GPU nodes failed (%s); retrying in %.0f s", error.status, wait)
        except Exception:
            view.settled.set()
            log.exception("watching GPU nodes failed; retrying in %.0f s", wait)
        stop.wait(wait)


def start(stop: threading.Event, view: NodeView = VIEW) -> threading.Thread:
    """Keep ``view`` current until ``stop`` is set (a daemon thread: it never holds the operator's exit)."""
    thread = threading.Thread(target=_run, args=(view, stop), name="llamaops-gpu-nodes", daemon=True)
    thread.start()
    return thread
