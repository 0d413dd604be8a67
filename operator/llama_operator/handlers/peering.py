"""Whether this replica is the active one under kopf peering, for the work kopf does not pause by itself.

kopf pauses a standby replica by closing its watch streams, so no handler runs there. The rechecks thread
(handlers.rechecks) runs outside kopf and would go on writing, e.g. after a replica with a higher priority took
over. kopf does not expose its paused state to handlers, so the thread asks the same peering object kopf reads,
with kopf's rule (kopf/_core/engines/peering.py, process_peering_event): a replica pauses while any other live
peer has a priority higher than or equal to its own, and a peer is live until ``lastseen + lifetime``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from llama_operator.handlers.options import PeeringOptions

GROUP, VERSION = "kopf.dev", "v1"
CLUSTER_PLURAL, NAMESPACED_PLURAL = "clusterkopfpeerings", "kopfpeerings"
# kopf's own assumption for a peer that does not say how long its record lasts.
DEFAULT_LIFETIME_S = 60
log = logging.getLogger(__name__)

# Reads the peering object's status: namespace None for the ClusterKopfPeering. None when the object is absent.
PeeringReader = Callable[[str, str | None], Mapping[str, Any] | None]


def _lastseen(value: Any, now: dt.datetime) -> dt.datetime:
    if not isinstance(value, str):
        return now  # kopf counts a record without lastseen as seen now
    seen = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return seen if seen.tzinfo else seen.replace(tzinfo=dt.UTC)


def blockers(peers: Mapping[str, Any], identity: str, priority: int, now: dt.datetime) -> list[str]:
    """The live peers that make kopf pause this replica: any other with a priority >= ours (pure)."""
    found = []
    for peer, record in peers.items():
        if peer == identity or not isinstance(record, Mapping):
            continue
        lifetime = dt.timedelta(seconds=int(record.get("lifetime", DEFAULT_LIFETIME_S)))
        if _lastseen(record.get("lastseen"), now) + lifetime <= now:
            continue  # dead: kopf ignores it (and removes it)
        if int(record.get("priority", 0)) >= priority:
            found.append(peer)
    return sorted(found)


def is_active(peers: Mapping[str, Any] | None, identity: str, priority: int, now: dt.datetime) -> bool:
    """Whether kopf lets this replica act, given the peering object's status (None: the object is absent, and
    kopf keeps a replica with mandatory peering paused until it exists)."""
    return peers is not None and not blockers(peers, identity, priority, now)


def read_peering(api: client.ApiClient) -> PeeringReader:
    """The reader of kopf's peering objects through the API (the edge)."""
    custom = client.CustomObjectsApi(api)

    def read(name: str, namespace: str | None) -> Mapping[str, Any] | None:
        try:
            if namespace is None:
                body = custom.get_cluster_custom_object(GROUP, VERSION, CLUSTER_PLURAL, name)
            else:
                body = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, NAMESPACED_PLURAL, name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        status = body.get("status") if isinstance(body, Mapping) else None
        return status if isinstance(status, Mapping) else {}

    return read


class ActiveGate:
    """``gate(namespace)``: may this replica act on objects in that namespace now? Blocking (one GET)."""

    def __init__(
        self,
        peering: PeeringOptions,
        read: PeeringReader,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.peering, self.read, self.clock = peering, read, clock
        self._missing_logged: set[str | None] = set()

    def __call__(self, namespace: str) -> bool:
        where = None if self.peering.clusterwide else namespace
        peers = self.read(self.peering.name, where)
        if peers is None and where not in self._missing_logged:
            self._missing_logged.add(where)
            kind = "ClusterKopfPeering" if where is None else f"KopfPeering in {where}"
            log.warning("%s %r not found: kopf keeps this operator paused until it exists", kind, self.peering.name)
        return is_active(peers, self.peering.identity, self.peering.priority, self.clock())
