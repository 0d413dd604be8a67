"""Periodic second looks that no Kubernetes event announces, without kopf timers.

A crash loop being remediated is declared over once the new pods have served a while, and a configuration becomes
lastKnownGood once it has been Available a while: nothing changes at that moment, so nothing triggers a handler.
kopf timers would do it, but they put a finalizer on every LlamaDeployment, which blocks deleting one (and its
namespace) whenever the operator is not running. Instead, LlamaDeployment events mark what needs a second look
and one background thread looks every few seconds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from llama_operator.desired import rollout as progressive
from llama_operator.render import status as status_rules

INTERVAL_S = 3.0
CRASH_LOOP = "crash_loop"
KNOWN_GOOD = "known_good"
ROLLOUT = "rollout"

_lock = threading.Lock()
_pending: dict[tuple[str, str], set[str]] = {}
log = logging.getLogger(__name__)


def needs(status: Mapping[str, Any], generation: int) -> set[str]:
    """Which second looks this status asks for (pure)."""
    wanted = set()
    remediation = status.get("remediation") or {}
    if remediation.get("crashLoop") and not remediation.get("exhausted"):
        wanted.add(CRASH_LOOP)
    # A halted rollout keeps lastKnownGood until the spec changes: nothing to look for every few seconds.
    if status_rules.known_good_pending(dict(status), generation) and not progressive.holds_known_good(
        status, generation
    ):
        wanted.add(KNOWN_GOOD)
    if progressive.needs_look(status, generation):
        wanted.add(ROLLOUT)
    return wanted


def track(key: tuple[str, str], status: Mapping[str, Any], generation: int) -> None:
    wanted = needs(status, generation)
    with _lock:
        if wanted:
            _pending[key] = wanted
        else:
            _pending.pop(key, None)


def forget(key: tuple[str, str]) -> None:
    with _lock:
        _pending.pop(key, None)


def wants(key: tuple[str, str], kind: str) -> bool:
    with _lock:
        return kind in _pending.get(key, ())


def pending() -> dict[tuple[str, str], set[str]]:
    with _lock:
        return {key: set(kinds) for key, kinds in _pending.items()}


def always(_namespace: str) -> bool:
    return True


def active_in(may_act: Callable[[str], bool], namespace: str) -> bool:
    """``may_act(namespace)``; False (logged) when it cannot tell."""
    try:
        return may_act(namespace)
    except Exception:
        log.exception("cannot tell whether this replica is active for %s; skipping its second looks", namespace)
        return False


def start(
    looks: Mapping[str, Callable[[str, str], None]],
    stop: threading.Event,
    may_act: Callable[[str], bool] = always,
) -> threading.Thread:
    """Run ``looks[kind](namespace, name)`` for every pending look every INTERVAL_S until ``stop`` is set.

    ``may_act(namespace)`` gates each round: with kopf peering, a standby replica (one kopf has paused) writes
    nothing (handlers.peering). It is asked once per namespace per round.
    """

    def loop() -> None:
        while not stop.wait(INTERVAL_S):
            allowed: dict[str, bool] = {}
            for (namespace, name), kinds in pending().items():
                if namespace not in allowed:
                    allowed[namespace] = active_in(may_act, namespace)
                if not allowed[namespace]:
                    continue
                for kind in sorted(kinds):
                    try:
                        looks[kind](namespace, name)
                    except Exception:
                        log.exception("second look (%s) at %s/%s failed", kind, namespace, name)

    thread = threading.Thread(target=loop, name="llamaops-rechecks", daemon=True)
    thread.start()
    return thread
