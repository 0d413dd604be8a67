"""Reconcile LlamaDeployments: read, compute the desired state (desired/), write it (handlers.writer).

Two entry points share one path. The LlamaDeployment's own handlers (create, update, resume) apply the children.
Events of the children (the Deployment's status, a deleted child) refresh the status or re-apply. Deletion needs
no handler: children carry ownerReferences and the garbage collector removes them.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Mapping
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from llama_operator.api import GROUP, PLURAL, VERSION
from llama_operator.desired import Desired, Inputs, Plan, desired_state
from llama_operator.desired import plan as plan_look
from llama_operator.handlers import (
    autoscaling,
    capacity,
    kube,
    locks,
    metrics,
    nodes,
    podindex,
    rechecks,
    rollout,
    writer,
)
from llama_operator.handlers.options import options
from llama_operator.knowledge import Knowledge
from llama_operator.render.children import WORKLOAD_KINDS
from llama_operator.render.images import ImageRewrite
from llama_operator.render.labels import MANAGED_BY, OWNER_LABEL

RETRY_DELAY_S = 10
log = logging.getLogger(__name__)
CHILD_LABELS: dict[str, Any] = {
    "app.kubernetes.io/managed-by": MANAGED_BY,
    OWNER_LABEL: kopf.PRESENT,
}


def inputs(*, service_monitors: bool, knowledge: Knowledge | None = None) -> Inputs:
    """The cluster's inputs to planning: the catalogs with its GPU nodes, the `--image-rewrite` rules."""
    return Inputs(knowledge or nodes.knowledge(), options().image_rewrites, service_monitors)


def plan(
    body: Mapping[str, Any],
    *,
    service_monitors: bool,
    image_rewrites: tuple[ImageRewrite, ...] | None = None,
    knowledge: Knowledge | None = None,
) -> Plan:
    """desired.plan with the operator's inputs by default (`--image-rewrite`, the cluster's GPU nodes)."""
    rules = options().image_rewrites if image_rewrites is None else image_rewrites
    return plan_look(body, Inputs(knowledge or nodes.knowledge(), rules, service_monitors))


def _gone(body: Mapping[str, Any] | None) -> bool:
    return body is None or bool((body.get("metadata") or {}).get("deletionTimestamp"))


def _look(
    namespace: str, name: str, *, apply: bool, fallback: Mapping[str, Any] | None = None, child_kind: str | None = None
) -> Desired | None:
    """Under the object's lock: read it and its serving workload (of ``child_kind``, when a child's event asks),
    compute its desired state."""
    body = kube.read_llama(name, namespace) or fallback
    if body is None or (fallback is None and _gone(body)):
        return None  # gone, or being deleted: the garbage collector takes the children
    if child_kind is not None:
        workload = kube.read_workload(child_kind, name, namespace)
        if workload is None:
            return None
    else:
        workload = kube.read_serving_workload(name, namespace)
    looked = inputs(service_monitors=apply and kube.serves_service_monitors())
    state = desired_state(
        body,
        looked,
        workload=workload,
        now=dt.datetime.now(dt.UTC),
        apply=apply,
        child_kind=child_kind,
        pods=podindex.pods(namespace, name),
    )
    # A changed configuration of several replicas moves progressively (desired/rollout.py); autoscaling pauses
    # while it does.
    return autoscaling.autoscaled(rollout.steered(state)) if state is not None else None


def reconcile(body: Mapping[str, Any], logger: kopf.Logger) -> str:
    """Apply the children of a valid spec (nothing for an invalid one), then write status. Returns the phase."""
    meta = body["metadata"]
    namespace, name = str(meta["namespace"]), str(meta["name"])
    with locks.object_lock(namespace, name):
        # kopf's body may predate a crash-loop remediation's overrides: plan from the object as it is now.
        state = _look(namespace, name, apply=True, fallback=body)
        return writer.write(state, logger) if state is not None else "Deleted"


def reapply(namespace: str, name: str) -> None:
    """Apply the children of the object as it is now (a progressive rollout's next step)."""
    with locks.object_lock(namespace, name):
        state = _look(namespace, name, apply=True)
        if state is not None:
            writer.write(state, log)


def refresh(namespace: str, name: str, child_kind: str | None = None) -> str | None:
    """Recompute status from the object as it is now (nothing applied). Returns the phase (None when the object is
    gone, or ``child_kind`` names a workload kind that is gone or the spec no longer renders)."""
    with locks.object_lock(namespace, name):
        state = _look(namespace, name, apply=False, child_kind=child_kind)
        return writer.write(state, log) if state is not None else None


def _timed(body: Mapping[str, Any], logger: kopf.Logger) -> str:
    began = time.perf_counter()
    try:
        phase = reconcile(body, logger)
    except ApiException as error:
        metrics.RECONCILES.labels("error").inc()
        # A conflict or an unavailable apiserver passes; retry later rather than hammering it.
        raise kopf.TemporaryError(
            f"Kubernetes API error {error.status}: {error.reason}: {writer.api_message(error)}", delay=RETRY_DELAY_S
        ) from error
    finally:
        metrics.RECONCILE_SECONDS.observe(time.perf_counter() - began)
    metrics.RECONCILES.labels("invalid" if phase == "Invalid" else "applied").inc()
    return phase


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
def on_llama(body: kopf.Body, logger: kopf.Logger, **kwargs: Any) -> None:
    podindex.keep(kwargs)
    _timed(body, logger)


def record_known_good(namespace: str, name: str) -> None:
    """A second look (handlers.rechecks): lastKnownGood is due once the configuration has served a while."""
    refresh(namespace, name)


@kopf.on.event(GROUP, VERSION, PLURAL)
def on_llama_event(event: kopf.RawEvent, **_: Any) -> None:
    body: Mapping[str, Any] = event["object"]
    meta: Mapping[str, Any] = body["metadata"]
    key = (str(meta["namespace"]), str(meta["name"]))
    if event["type"] == "DELETED":
        metrics.forget(key)
        rechecks.forget(key)
        capacity.forget(key)
        locks.forget(key)
    else:
        rechecks.track(key, body.get("status") or {}, int(meta.get("generation") or 0))
        capacity.track(key, body)


def _child_changed(event_type: str | None, child: Mapping[str, Any], logger: kopf.Logger) -> None:
    meta = child["metadata"]
    owner = (str(meta["namespace"]), str(meta["labels"][OWNER_LABEL]))
    try:
        if event_type == "DELETED":
            parent = kube.read_llama(owner[1], owner[0])
            if parent is None or _gone(parent):
                return  # being deleted: the garbage collector takes the children
            logger.info(f"{child['kind']} {meta['name']} was deleted; re-applying")
            _timed(parent, logger)
        elif child["kind"] in WORKLOAD_KINDS:
            # Read afresh rather than trust the event's copy: an event handled late (a burst of them) would turn a
            # Running status back to Progressing, and post Events for transitions that never happened.
            refresh(*owner, child_kind=child["kind"])
    except ApiException as error:
        # Event handlers are not retried; the next event of this child, or the resume of the owner, catches up.
        logger.warning(f"could not refresh {meta['name']}: Kubernetes API error {error.status}")


@kopf.on.event("apps", "v1", "deployments", labels=CHILD_LABELS)
def on_deployment(type: str | None, body: kopf.Body, logger: kopf.Logger, **kwargs: Any) -> None:
    podindex.keep(kwargs)
    _child_changed(type, body, logger)


@kopf.on.event("", "v1", "services", labels=CHILD_LABELS)
def on_service(type: str | None, body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    if type == "DELETED":
        _child_changed(type, body, logger)


@kopf.on.event("policy", "v1", "poddisruptionbudgets", labels=CHILD_LABELS)
def on_pdb(type: str | None, body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    if type == "DELETED":
        _child_changed(type, body, logger)


@kopf.on.event("keda.sh", "v1alpha1", "scaledobjects", labels=CHILD_LABELS)
def on_scaled_object(type: str | None, body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    # spec.autoscaling's ScaledObject (render/autoscaling.py): re-applied when deleted. Without KEDA's CRDs in the
    # cluster kopf only warns and serves the rest.
    if type == "DELETED":
        _child_changed(type, body, logger)


@kopf.on.event("leaderworkerset.x-k8s.io", "v1", "leaderworkersets", labels=CHILD_LABELS)
def on_leader_worker_set(type: str | None, body: kopf.Body, logger: kopf.Logger, **kwargs: Any) -> None:
    # Multi-node replicas (render/lws.py). Without the LWS API in the cluster kopf only warns and serves the rest.
    podindex.keep(kwargs)
    _child_changed(type, body, logger)


@kopf.on.event("", "v1", "pods", labels=CHILD_LABELS)
def on_rollout_pod(namespace: str | None, labels: kopf.Labels, logger: kopf.Logger, **_: Any) -> None:
    """A pod of a deployment whose progressive rollout moves: judge the canary now (a crash halts it at once)."""
    key = (namespace or "", str(labels[OWNER_LABEL]))
    if not rechecks.wants(key, rechecks.ROLLOUT):
        return
    try:
        reapply(*key)
    except (ApiException, kopf.TemporaryError) as error:
        # Event handlers are not retried; the periodic recheck (handlers.rechecks) catches up.
        logger.warning(f"rollout look at {key[0]}/{key[1]} failed: {error}")
