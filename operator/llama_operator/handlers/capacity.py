"""The Capacity condition follows the GPU nodes: re-judged when the node view changes, not by listing nodes.

A reconcile writes ``Capacity`` from the node view as it is then (planning.capacity through validate). Nodes come
and go without any LlamaDeployment event, so LlamaDeployment events keep, per object, its spec (parsed once per
generation) and the Capacity condition its status holds. One background thread looks every INTERVAL_S: when the
node view's version moved, it recomputes every tracked object's verdict (a dictionary lookup and a pass over the
nodes of its product: a few milliseconds for 1,000 objects) and refreshes only those whose verdict differs from
their status. Objects written since the last look are compared too, so a reconcile that planned with an older
view is caught. A verdict that stays True does not move with the node count (its message holds only the spec's
figures), so adding a node refreshes only the objects it changes something for. With spec.autoscaling the
ScaledObject's cap (status.autoscaling.maxReplicas) is compared as well: the refresh applies the new cap; and an
object whose Autoscaling condition says KedaNotInstalled is refreshed once the cluster serves KEDA's ScaledObjects.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from llama_operator.api import LlamaDeploymentSpec
from llama_operator.handlers import nodes
from llama_operator.knowledge import Knowledge, load_knowledge
from llama_operator.planning.autoscaling import limits
from llama_operator.planning.capacity import capacity_of
from llama_operator.render.status import AUTOSCALING, CAPACITY

INTERVAL_S = 5.0
KEDA_MISSING = "KedaNotInstalled"
Key = tuple[str, str]
Written = tuple[str, str, str]  # (status, reason, message)
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Tracked:
    generation: int
    spec: LlamaDeploymentSpec
    written: Written
    # status.autoscaling.maxReplicas: the ScaledObject's cap, which follows the nodes too (None: no autoscaling).
    scaled_max: int | None = None
    # Its Autoscaling condition says KedaNotInstalled: looked at again once KEDA's CRD appears.
    awaits_keda: bool = False


_lock = threading.Lock()
_tracked: dict[Key, Tracked] = {}
_dirty: set[Key] = set()


def written(status: Mapping[str, Any], generation: int) -> Written | None:
    """The Capacity condition ``status`` holds for this generation (None: none, or an older generation's, which
    the pending reconcile rewrites)."""
    for condition in status.get("conditions") or []:
        if isinstance(condition, Mapping) and condition.get("type") == CAPACITY:
            if condition.get("observedGeneration") != generation:
                return None
            return str(condition.get("status")), str(condition.get("reason")), str(condition.get("message"))
    return None


def track(key: Key, body: Mapping[str, Any]) -> None:
    """A LlamaDeployment event: remember its spec and the Capacity condition it was written with."""
    generation = int((body.get("metadata") or {}).get("generation") or 0)
    condition = written(body.get("status") or {}, generation)
    if condition is None:
        forget(key)
        return
    with _lock:
        known = _tracked.get(key)
    spec = known.spec if known is not None and known.generation == generation else None
    if spec is None:
        try:
            spec = LlamaDeploymentSpec.model_validate(body.get("spec"))
        except ValidationError:
            forget(key)
            return
    status = body.get("status") or {}
    scaled_max = (status.get("autoscaling") or {}).get("maxReplicas") if spec.autoscaling is not None else None
    awaits = spec.autoscaling is not None and any(
        isinstance(c, Mapping) and c.get("type") == AUTOSCALING and c.get("reason") == KEDA_MISSING
        for c in status.get("conditions") or []
    )
    entry = Tracked(generation, spec, condition, int(scaled_max) if scaled_max is not None else None, awaits)
    with _lock:
        if known is None or (known.generation, known.written, known.scaled_max) != (
            generation,
            condition,
            entry.scaled_max,
        ):
            _dirty.add(key)
        _tracked[key] = entry


def forget(key: Key) -> None:
    with _lock:
        _tracked.pop(key, None)
        _dirty.discard(key)


def due(tracked: Mapping[Key, Tracked], keys: Iterable[Key], knowledge: Knowledge) -> list[Key]:
    """Of ``keys``, those whose verdict with ``knowledge`` differs from what their status holds (pure)."""
    stale = []
    for key in keys:
        entry = tracked.get(key)
        if entry is None:
            continue
        verdict = capacity_of(entry.spec, knowledge).verdict
        scaling = entry.spec.autoscaling
        # The cap of the ScaledObject moves with the nodes too: the refresh applies it (desired.autoscaling).
        capped = scaling is not None and entry.scaled_max is not None
        if (verdict.status, verdict.reason, verdict.message) != entry.written or (
            capped and scaling is not None and limits(scaling, verdict.fit).max_replicas != entry.scaled_max
        ):
            stale.append(key)
    return stale


def _always(_namespace: str) -> bool:
    return True


def _never() -> bool:
    return False


class Follower:
    """One round of the thread: which objects to refresh now, and the view version they were judged at.
    ``keda``: whether the cluster serves KEDA's ScaledObjects now (asked only while an object awaits it)."""

    def __init__(
        self,
        view: nodes.NodeView,
        base: Callable[[], Knowledge] = load_knowledge,
        keda: Callable[[], bool] = _never,
    ) -> None:
        self.view, self.base, self.keda = view, base, keda
        self.seen = -1

    def round(self) -> list[Key]:
        version = self.view.version
        with _lock:
            keys = list(_tracked) if version != self.seen else list(_dirty)
            _dirty.clear()
            tracked = dict(_tracked)
        self.seen = version
        stale = due(tracked, keys, self.view.knowledge(self.base())) if keys else []
        # KEDA installed after the deployment: no event of the deployment says so.
        waiting = [key for key, entry in tracked.items() if entry.awaits_keda and key not in stale]
        if waiting and self.keda():
            stale += waiting
        return stale


def start(
    refresh: Callable[[str, str], object],
    stop: threading.Event,
    may_act: Callable[[str], bool] = _always,
    view: nodes.NodeView = nodes.VIEW,
    keda: Callable[[], bool] = _never,
) -> threading.Thread:
    """Refresh (``refresh(namespace, name)``, under the object's lock) each object whose Capacity verdict changed,
    every INTERVAL_S until ``stop`` is set. ``may_act`` gates it as it gates the rechecks (handlers.peering)."""
    follower = Follower(view, keda=keda)

    def loop() -> None:
        while not stop.wait(INTERVAL_S):
            try:
                keys = follower.round()
            except Exception:
                log.exception("judging capacity failed; judging again in %.0f s", INTERVAL_S)
                follower.seen = -1
                continue
            for namespace, name in keys:
                try:
                    if may_act(namespace):
                        refresh(namespace, name)
                except Exception:
                    log.exception("refreshing %s/%s after a node change failed", namespace, name)
                    with _lock:
                        _dirty.add((namespace, name))  # looked at again next round

    thread = threading.Thread(target=loop, name="llamaops-capacity", daemon=True)
    thread.start()
    return thread
