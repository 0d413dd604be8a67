"""Reconcile LlamaDeployments: validate, render the children, server-side apply them, publish status.

Two entry points share one path. The LlamaDeployment's own handlers (create, update, resume) apply the children.
Events of the children (the Deployment's status, a deleted child) refresh the status or re-apply. Deletion needs
no handler: children carry ownerReferences and the garbage collector removes them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Mapping
from typing import Any, cast

import kopf
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from llama_operator.api import GROUP, PLURAL, VERSION, LlamaDeployment
from llama_operator.handlers import kube, metrics
from llama_operator.planning import ValidationResult, validate
from llama_operator.render import Owner, children
from llama_operator.render import status as status_rules
from llama_operator.render.labels import MANAGED_BY, OWNER_LABEL, SPEC_GENERATION_ANNOTATION, selector_labels
from llama_operator.render.service import endpoint

RETRY_DELAY_S = 10
CHILD_LABELS: dict[str, Any] = {
    "app.kubernetes.io/managed-by": MANAGED_BY,
    OWNER_LABEL: kopf.PRESENT,
}


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _document(body: Mapping[str, Any]) -> dict[str, Any]:
    """The object as the user wrote it: status is the operator's own and never validated."""
    return {key: value for key, value in dict(body).items() if key != "status"}


def _parse(document: dict[str, Any]) -> LlamaDeployment | None:
    try:
        return LlamaDeployment.model_validate(document)
    except ValidationError:
        return None  # validate() turns the same errors into findings


def _owner(body: Mapping[str, Any]) -> Owner:
    meta = body["metadata"]
    return Owner(meta["name"], meta["namespace"], meta["uid"], int(meta.get("generation", 1)))


def _rollout(deployment: dict[str, Any] | None, generation: int, valid: bool) -> status_rules.Rollout | None:
    if deployment is None:
        return None
    rollout = status_rules.Rollout.from_deployment(deployment)
    rendered = int(((deployment.get("metadata") or {}).get("annotations") or {}).get(SPEC_GENERATION_ANNOTATION, 0))
    if valid and rendered < generation:
        # The Deployment still holds an older generation's template: the new one is about to be applied.
        return dataclasses.replace(rollout, observed=False)
    return rollout


def publish(body: Mapping[str, Any], result: ValidationResult, deployment: dict[str, Any] | None) -> str:
    """Patch status when it changed, post an Event per condition transition, update metrics. Returns the phase."""
    owner = _owner(body)
    old = dict(body.get("status") or {})
    new = status_rules.compute(
        generation=owner.generation,
        result=result,
        rollout=_rollout(deployment, owner.generation, result.valid),
        old=old,
        now=_now(),
        endpoint=endpoint(owner),
        selector=",".join(f"{k}={v}" for k, v in selector_labels(owner.name).items()),
    )
    if any(old.get(key) != value for key, value in new.items()):
        kube.patch_llama_status(owner.name, owner.namespace, new)
    for change in status_rules.transitions(old, new):
        kopf.event(
            kopf.Body(cast(kopf.RawBody, dict(body))),
            type="Warning" if change.warning else "Normal",
            reason=change.reason,
            message=f"{change.type}={change.status}: {change.message}",
        )
    metrics.observe((owner.namespace, owner.name), new["phase"], [(f.code, f.severity) for f in result.findings])
    phase: str = new["phase"]
    return phase


def reconcile(body: Mapping[str, Any], logger: Any) -> str:
    """Apply the children of a valid spec (nothing for an invalid one), then publish status. Returns the phase."""
    document = _document(body)
    resource = _parse(document)
    result = validate(document)
    owner = _owner(body)
    deployment: dict[str, Any] | None = None
    if resource is not None and result.valid and result.effective is not None:
        manifests = children(
            owner,
            resource.spec,
            result.effective,
            result.plan,
            service_monitors=kube.serves_service_monitors(),
        )
        for manifest in manifests:
            applied = kube.apply(manifest)
            if manifest["kind"] == "Deployment":
                deployment = applied
        kinds = ", ".join(m["kind"] for m in manifests)
        logger.info(f"{owner.namespace}/{owner.name}: applied {kinds} for generation {owner.generation}")
    else:
        # Nothing new is deployed; a Deployment of an earlier, valid generation keeps serving.
        deployment = kube.read_deployment(owner.name, owner.namespace)
        codes = ", ".join(f.code for f in result.errors)
        logger.warning(
            f"{owner.namespace}/{owner.name}: generation {owner.generation} is invalid ({codes}); nothing applied"
        )
    return publish(body, result, deployment)


def _timed(body: Mapping[str, Any], logger: Any) -> str:
    began = time.perf_counter()
    try:
        phase = reconcile(body, logger)
    except ApiException as error:
        metrics.RECONCILES.labels("error").inc()
        # A conflict or an unavailable apiserver passes; retry later rather than hammering it.
        raise kopf.TemporaryError(
            f"Kubernetes API error {error.status}: {error.reason}", delay=RETRY_DELAY_S
        ) from error
    finally:
        metrics.RECONCILE_SECONDS.observe(time.perf_counter() - began)
    metrics.RECONCILES.labels("invalid" if phase == "Invalid" else "applied").inc()
    return phase


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
def on_llama(body: kopf.Body, logger: kopf.Logger, **_: Any) -> dict[str, str]:
    return {"phase": _timed(body, logger)}


@kopf.on.event(GROUP, VERSION, PLURAL)
def on_llama_event(event: kopf.RawEvent, **_: Any) -> None:
    if event["type"] == "DELETED":
        meta = event["object"]["metadata"]
        metrics.forget((meta["namespace"], meta["name"]))


def _owner_of(child: Mapping[str, Any]) -> dict[str, Any] | None:
    meta = child["metadata"]
    parent = kube.read_llama(meta["labels"][OWNER_LABEL], meta["namespace"])
    if parent is None or (parent.get("metadata") or {}).get("deletionTimestamp"):
        return None  # being deleted: the garbage collector takes the children
    return parent


def _child_changed(event_type: str | None, child: Mapping[str, Any], logger: Any) -> None:
    parent = _owner_of(child)
    if parent is None:
        return
    try:
        if event_type == "DELETED":
            logger.info(f"{child['kind']} {child['metadata']['name']} was deleted; re-applying")
            _timed(parent, logger)
        elif child["kind"] == "Deployment":
            document = _document(parent)
            publish(parent, validate(document), dict(child))
    except ApiException as error:
        # Event handlers are not retried; the next event of this child, or the resume of the owner, catches up.
        logger.warning(f"could not refresh {child['metadata']['name']}: Kubernetes API error {error.status}")


@kopf.on.event("apps", "v1", "deployments", labels=CHILD_LABELS)
def on_deployment(type: str | None, body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    _child_changed(type, body, logger)


@kopf.on.event("", "v1", "services", labels=CHILD_LABELS)
def on_service(type: str | None, body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    if type == "DELETED":
        _child_changed(type, body, logger)


@kopf.on.event("policy", "v1", "poddisruptionbudgets", labels=CHILD_LABELS)
def on_pdb(type: str | None, body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    if type == "DELETED":
        _child_changed(type, body, logger)
