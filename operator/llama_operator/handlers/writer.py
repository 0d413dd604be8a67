"""The one writer of a desired state (desired.Desired): server-side apply of the children, pruning of the other
workload kind, the status patch, Events and metrics. Decides nothing: a refusal of a child is turned into status by
desired.refused."""

from __future__ import annotations

import json
from typing import NoReturn

import kopf
from kubernetes.client.exceptions import ApiException

from llama_operator.desired import REFUSED_MESSAGE_MAX, Desired, refused
from llama_operator.handlers import kube, metrics
from llama_operator.render.children import WORKLOAD_KINDS

REFUSED_RETRY_S = 60


def api_message(error: ApiException) -> str:
    """The API server's own message (what it refused and why), shortened for a log line."""
    try:
        return str(json.loads(error.body or "{}").get("message") or "")[:REFUSED_MESSAGE_MAX]
    except (ValueError, AttributeError):
        return ""


def write(state: Desired, logger: kopf.Logger) -> str:
    """Apply ``state``'s children (if any), then its status, Events and metrics. Returns the phase."""
    if state.prune_scaled_object:
        owner = state.owner
        if kube.delete_scaled_object(owner.name, owner.namespace, owner.uid):
            logger.info(f"{owner.namespace}/{owner.name}: deleted the ScaledObject (spec.autoscaling was removed)")
    if state.manifests:
        _apply(state, logger)
    elif state.apply:
        # Nothing new is deployed; a workload of an earlier, valid generation keeps serving.
        owner = state.owner
        codes = ", ".join(f.code for f in state.planned.result.errors)
        logger.warning(
            f"{owner.namespace}/{owner.name}: generation {owner.generation} is invalid ({codes}); nothing applied"
        )
    _publish(state)
    return state.phase


def _apply(state: Desired, logger: kopf.Logger) -> None:
    owner = state.owner
    applied_kind: str | None = None
    for manifest in state.manifests:
        try:
            kube.apply(manifest)
        except ApiException as error:
            if error.status != 422:
                raise
            _refused(state, manifest["kind"], error, logger)
        if manifest["kind"] in WORKLOAD_KINDS:
            applied_kind = manifest["kind"]
    # A spec that moved between one node and several per replica renders the other workload kind: delete the one
    # of the earlier generation (once the new one is applied).
    stale = [kind for kind in WORKLOAD_KINDS if applied_kind is not None and kind != applied_kind]
    for kind in stale:
        if kube.delete_workload(kind, owner.name, owner.namespace, owner.uid):
            logger.info(f"{owner.namespace}/{owner.name}: deleted the {kind} of an earlier generation")
    for name in state.prune:
        if kube.delete_workload("Deployment", name, owner.namespace, owner.uid):
            logger.info(f"{owner.namespace}/{owner.name}: deleted Deployment {name}")
    kinds = ", ".join(m["kind"] for m in state.manifests)
    logger.info(f"{owner.namespace}/{owner.name}: applied {kinds} for generation {owner.generation}")


def _refused(state: Desired, kind: str, error: ApiException, logger: kopf.Logger) -> NoReturn:
    """Say why in status, and try again only after a minute (the clash or the policy may go away)."""
    owner = state.owner
    reason = api_message(error) or str(error.reason)
    _publish(refused(state, kind, reason))
    metrics.RECONCILES.labels("error").inc()
    logger.warning(
        f"{owner.namespace}/{owner.name}: the API server refused the {kind} (422); retrying in {REFUSED_RETRY_S} s"
    )
    raise kopf.TemporaryError(
        f"{kind} refused by the API server: {reason[:REFUSED_MESSAGE_MAX]}", delay=REFUSED_RETRY_S
    )


def _publish(state: Desired) -> None:
    owner = state.owner
    if state.changed:
        kube.patch_llama_status(owner.name, owner.namespace, state.status)
    for event in state.events:
        kube.post_event(state.body, event.type, event.reason, event.message)
    if state.check is not None:
        metrics.observe_remediation(state.check.decision, state.check.classification)
    metrics.observe_rollout(state.seen.get("rollout"), state.status.get("rollout"))
    metrics.observe((owner.namespace, owner.name), state.phase, state.findings)
