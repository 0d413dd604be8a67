"""The kopf index of the managed pods (handlers.crashloop.llama_pods), for every look that reads them.

kopf hands an index to handlers only, as the keyword argument named after its function; the first handler call
keeps it here, so the reconcile, the status refreshes and the second looks (handlers.rechecks) read pods from
memory, never from the API.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

ARGUMENT = "llama_pods"
INDEX: dict[str, kopf.Index[tuple[str, str], Any]] = {}


def keep(kwargs: Mapping[str, Any]) -> None:
    """Keep the index a handler was given (every handler is given it)."""
    index = kwargs.get(ARGUMENT)
    if index is not None:
        INDEX["pods"] = index


def index() -> kopf.Index[tuple[str, str], Any] | None:
    """The whole index (handlers.fleet maps Prometheus's pods to their deployments with it); None before any
    handler has run."""
    return INDEX.get("pods")


def pods(namespace: str, name: str) -> list[dict[str, Any]] | None:
    """The pods of one LlamaDeployment as the index holds them; None before any handler has run."""
    index = INDEX.get("pods")
    return [dict(pod) for pod in index.get((namespace, name), [])] if index is not None else None
