"""One lock per LlamaDeployment: every status writer (reconcile, child events, crash-loop checks) reads the object
afresh and writes under it, so no writer overwrites another's conditions with a stale copy."""

from __future__ import annotations

import threading

_locks: dict[tuple[str, str], threading.RLock] = {}
_guard = threading.Lock()


def object_lock(namespace: str, name: str) -> threading.RLock:
    with _guard:
        return _locks.setdefault((namespace, name), threading.RLock())


def forget(key: tuple[str, str]) -> None:
    """The object was deleted: drop its lock (a writer still holding it finishes; the next look makes a new one)."""
    with _guard:
        _locks.pop(key, None)


def held() -> int:
    """How many objects have a lock (for tests of the pruning)."""
    with _guard:
        return len(_locks)
