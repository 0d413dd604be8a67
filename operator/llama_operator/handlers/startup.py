"""Operator-wide settings, applied once when kopf starts."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import kopf
from prometheus_client import start_http_server

from llama_operator import __version__
from llama_operator.handlers import (
    analysis,
    capacity,
    crashloop,
    fleet,
    kube,
    nodes,
    peering,
    podindex,
    rechecks,
    reconcile,
)
from llama_operator.handlers.diffbase import CompactDiffBaseStorage
from llama_operator.handlers.options import PeeringOptions, options
from llama_operator.health.promql import namespace_regex

# Every object the operator writes (children, status) is owned by this server-side-apply field manager.
FIELD_MANAGER = kube.FIELD_MANAGER


WORKER_LIMIT = 100
# How long startup waits for the first list of GPU nodes, so the first reconciles judge capacity rather than write
# Capacity=Unknown and then rewrite every object once the nodes arrive.
NODES_SETTLE_S = 10.0


def apply_settings(settings: kopf.OperatorSettings, peers: PeeringOptions | None = None) -> None:
    """kopf's settings for this operator (pure: unit-tested)."""
    # Keep our annotations under our own API group rather than kopf's defaults.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="llamaops.dev")
    # Compact: a large spec kept whole overflowed the object's 256 KiB of annotations (handlers.diffbase).
    settings.persistence.diffbase_storage = CompactDiffBaseStorage(
        prefix="llamaops.dev", key="last-handled-configuration"
    )
    settings.persistence.finalizer = "llamaops.dev/finalizer"
    # Handlers post an Event for each condition transition themselves; kopf adds one for each warning and error
    # it logs, rather than one per handler run.
    settings.posting.level = logging.WARNING
    # Handlers mostly wait on the API server (about a quarter of a core at 300 deployments): kopf's default pool
    # (CPUs + 4 threads) queued events for seconds, so status was computed from stale children.
    settings.execution.max_workers = kube.WORKERS
    # kopf waits this long for its own annotation patch to come back through the watch before it treats an older
    # event as current. Under a burst (300 LlamaDeployments created at once) the watch lagged past the default 5 s
    # and kopf handled every creation twice (benchmarks/scale.py: 596 creations for 300 objects).
    settings.persistence.consistency_timeout = 30.0
    # Each per-object worker holds its event and kopf's copies of the body while it waits for a handler thread; a
    # burst of 1,000 creations kept thousands alive at once. Beyond this many, events wait unparsed in the watch;
    # an idle worker gives its slot back after 2 s rather than kopf's 5 s.
    settings.queueing.worker_limit = WORKER_LIMIT
    settings.batching.idle_timeout = 2.0
    if peers is not None:
        # kopf.run takes the peering name and priority but not these. A standby takes over once the active
        # replica's record is older than its lifetime (kopf's default, 60 s, is too slow a failover).
        settings.peering.lifetime = peers.lifetime_s
        if peers.clusterwide:
            settings.peering.clusterwide = True


def _peering_in_force(settings: kopf.OperatorSettings, peers: PeeringOptions) -> PeeringOptions:
    """What kopf peers with: its settings are the truth (a cluster-wide operator always peers cluster-wide)."""
    return PeeringOptions(
        name=settings.peering.name,
        identity=peers.identity,
        priority=settings.peering.priority,
        lifetime_s=settings.peering.lifetime,
        clusterwide=settings.peering.clusterwide,
    )


_STOP = threading.Event()


def _start_fleet_health(namespaces: tuple[str, ...], may_act: Callable[[str], bool], logger: kopf.Logger) -> None:
    """With Prometheus configured: one query per interval for the whole fleet's crash loops (handlers.fleet)."""
    try:
        client, interval = fleet.client_from_env(), fleet.interval_from_env()
    except ValueError as error:
        logger.error(f"Prometheus settings: {error}; crash loops are detected from pod status only")
        return
    if client is None:
        return
    selector = namespace_regex(namespaces)
    fleet.start(client, selector, interval, podindex.index, crashloop.recheck, _STOP, may_act)
    where = f"namespaces matching {selector!r}" if selector is not None else "every namespace"
    logger.info(f"crash loops from {client.config.url} too: one query every {interval:g} s for {where}")
    # The canaries' metric analysis: one more query per interval, only while a canary holds.
    analysis.start(client, interval, _STOP)


@kopf.on.cleanup()
def stop_rechecks(**_: Any) -> None:
    _STOP.set()


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, logger: kopf.Logger, **_: Any) -> None:
    opts = options()
    apply_settings(settings, opts.peering)
    kube.load_config()
    # Every replica, active or standby: each serves admission, which plans with the GPU nodes.
    nodes.start(_STOP)
    start_http_server(opts.metrics_port, addr=opts.metrics_address)
    looks = {
        rechecks.CRASH_LOOP: crashloop.recheck,
        rechecks.KNOWN_GOOD: reconcile.record_known_good,
        rechecks.ROLLOUT: reconcile.reapply,
    }
    peers = None if settings.peering.standalone or opts.peering is None else _peering_in_force(settings, opts.peering)
    may_act: Callable[[str], bool] = rechecks.always
    if peers is not None:
        may_act = peering.ActiveGate(peers, peering.read_peering(kube.api()))
    rechecks.start(looks, _STOP, may_act)
    capacity.start(reconcile.refresh, _STOP, may_act, keda=kube.serves_scaled_objects)
    _start_fleet_health(opts.namespaces, may_act, logger)
    if peers is not None:
        logger.info(
            "peering %r (%s) as %s, priority %d, lifetime %d s",
            peers.name,
            "cluster-wide" if peers.clusterwide else "per namespace",
            peers.identity,
            peers.priority,
            peers.lifetime_s,
        )
    if not nodes.VIEW.settled.wait(NODES_SETTLE_S):
        logger.warning("GPU nodes not listed after %.0f s: capacity is judged once they are", NODES_SETTLE_S)
    logger.info(
        "llama-operator %s starting; metrics on %s:%d/metrics", __version__, opts.metrics_address, opts.metrics_port
    )
