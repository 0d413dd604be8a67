"""Reconcile LlamaDeployments: validate, render the children, server-side apply them, publish status.

Two entry points share one path. The LlamaDeployment's own handlers (create, update, resume) apply the children.
Events of the children (the Deployment's status, a deleted child) refresh the status or re-apply. Deletion needs
no handler: children carry ownerReferences and the garbage collector removes them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
import time
from collections.abc import Mapping
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from llama_operator.api import GROUP, PLURAL, VERSION, EffectiveConfig, LlamaDeployment, LlamaDeploymentStatus
from llama_operator.handlers import kube, metrics, nodes, rechecks
from llama_operator.handlers.options import options
from llama_operator.health import effective_config, effective_spec
from llama_operator.health.policy import current_overrides
from llama_operator.knowledge import Knowledge
from llama_operator.planning import Finding, ValidationResult, validate
from llama_operator.render import Owner, children
from llama_operator.render import status as status_rules
from llama_operator.render.children import WORKLOAD_KINDS, workload_kind
from llama_operator.render.images import ImageRewrite, rewrite_image
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
    rollout = status_rules.Rollout.from_workload(deployment)
    rendered = int(((deployment.get("metadata") or {}).get("annotations") or {}).get(SPEC_GENERATION_ANNOTATION, 0))
    if valid and rendered < generation:
        # The Deployment still holds an older generation's template: the new one is about to be applied.
        return dataclasses.replace(rollout, observed=False)
    return rollout


_locks: dict[tuple[str, str], threading.RLock] = {}
_locks_guard = threading.Lock()


def object_lock(namespace: str, name: str) -> threading.RLock:
    """One lock per LlamaDeployment: every status writer (reconcile, child events, crash-loop checks) reads the
    object afresh and writes under it, so no writer overwrites another's conditions with a stale copy."""
    with _locks_guard:
        return _locks.setdefault((namespace, name), threading.RLock())


def publish(
    namespace: str,
    name: str,
    deployment: dict[str, Any] | None,
    *,
    known: tuple[Mapping[str, Any], ValidationResult] | None = None,
    child_kind: str | None = None,
) -> str | None:
    """Recompute status from the object as it is now: patch it when it changed, post an Event per condition
    transition, update metrics. Returns the phase (None when the object is gone, or when ``child_kind`` names a
    workload kind the spec no longer renders: that one is being pruned and its status is not ours to show).

    ``known`` is the object and its validation when the caller read and planned it under this object's lock
    (reconcile, the crash-loop check): one GET and one plan fewer per event, which is most of the work at scale.
    """
    with object_lock(namespace, name):
        if known is not None:
            body, result = known
        else:
            read = kube.read_llama(name, namespace)
            if read is None or (read.get("metadata") or {}).get("deletionTimestamp"):
                return None  # gone, or being deleted: the garbage collector takes the children
            planned = plan(read, service_monitors=False)
            if child_kind is not None and not _renders(planned, child_kind):
                return None
            body, result = read, _with_refusal(planned.result, read)
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
        kube.post_event(
            body,
            "Warning" if change.warning else "Normal",
            change.reason,
            f"{change.type}={change.status}: {change.message}",
        )
    metrics.observe((owner.namespace, owner.name), new["phase"], [(f.code, f.severity) for f in result.findings])
    phase: str = new["phase"]
    return phase


def _renders(planned: Plan, kind: str) -> bool:
    """Whether the workload of this kind is the one the plan serves with (or nothing is deployed anew)."""
    effective = planned.result.effective
    return effective is None or not planned.manifests or workload_kind(effective) == kind


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """What one look at a LlamaDeployment decides: its validation (of the user's spec) and, when it may run,
    the children to apply (the spec with remediation's overrides, if any)."""

    resource: LlamaDeployment | None
    result: ValidationResult  # findings of the user's spec; effective/plan are what runs
    manifests: list[dict[str, Any]]


def status_of(body: Mapping[str, Any]) -> LlamaDeploymentStatus:
    try:
        return LlamaDeploymentStatus.model_validate(body.get("status") or {})
    except ValidationError:
        return LlamaDeploymentStatus()  # written by an incompatible version: start over


def _rewritten(effective: EffectiveConfig, rules: tuple[ImageRewrite, ...]) -> EffectiveConfig:
    return effective.model_copy(update={"image": rewrite_image(effective.image, rules)}) if rules else effective


def plan(
    body: Mapping[str, Any],
    *,
    service_monitors: bool,
    image_rewrites: tuple[ImageRewrite, ...] | None = None,
    knowledge: Knowledge | None = None,
) -> Plan:
    """Pure: validate the user's spec, apply remediation's overrides for this generation, render the children.

    ``image_rewrites`` (default: the operator's `--image-rewrite` rules) map the image to a private registry. The
    effective config carries the rewritten image, so the children run it and status shows it: what is deployed.
    Rules are idempotent (render.images), so a rollback to status.lastKnownGood's image renders it unchanged.
    ``knowledge`` defaults to the catalogs with the cluster's GPU nodes (handlers.nodes), as admission plans."""
    rules = options().image_rewrites if image_rewrites is None else image_rewrites
    knowledge = knowledge or nodes.knowledge()
    document = _document(body)
    resource = _parse(document)
    result = validate(document, knowledge)
    if resource is None or not result.valid or result.effective is None:
        # Nothing is deployed; status still shows the image the spec would run, as it would be pulled.
        if rules and result.effective is not None:
            result = dataclasses.replace(result, effective=_rewritten(result.effective, rules))
        return Plan(resource, result, [])
    owner = _owner(body)
    overrides = current_overrides(status_of(body), owner.generation)
    spec, running = resource.spec, result
    if overrides is not None:
        spec = effective_spec(resource.spec, overrides)
        dumped = spec.model_dump(by_alias=True, exclude_none=True, mode="json")
        running = validate({**document, "spec": dumped}, knowledge)
        if not running.valid or running.effective is None:
            spec, running = resource.spec, result  # an override the planner refuses is never deployed
    effective = _rewritten(effective_config(running.effective or result.effective, overrides), rules)
    shown = dataclasses.replace(result, effective=effective, plan=running.plan)
    return Plan(resource, shown, children(owner, spec, effective, running.plan, service_monitors=service_monitors))


def reconcile(body: Mapping[str, Any], logger: Any) -> str:
    """Apply the children of a valid spec (nothing for an invalid one), then publish status. Returns the phase."""
    owner = _owner(body)
    with object_lock(owner.namespace, owner.name):
        # kopf's body may predate a crash-loop remediation's overrides: plan from the object as it is now.
        body = kube.read_llama(owner.name, owner.namespace) or body
        planned = plan(body, service_monitors=kube.serves_service_monitors())
        return _apply(body, planned, logger)


def _apply(body: Mapping[str, Any], planned: Plan, logger: Any) -> str:
    """Under the object's lock (reconcile): ``body`` is fresh, so publish needs no second read."""
    owner = _owner(body)
    deployment: dict[str, Any] | None = None
    if planned.manifests:
        for manifest in planned.manifests:
            try:
                applied = kube.apply(manifest)
            except ApiException as error:
                if error.status != 422:
                    raise
                _refused(body, planned, manifest["kind"], error, logger)
            if manifest["kind"] in WORKLOAD_KINDS:
                deployment = applied
        _prune_workloads(owner, deployment, logger)
        kinds = ", ".join(m["kind"] for m in planned.manifests)
        logger.info(f"{owner.namespace}/{owner.name}: applied {kinds} for generation {owner.generation}")
    else:
        # Nothing new is deployed; a Deployment of an earlier, valid generation keeps serving.
        deployment = kube.read_serving_workload(owner.name, owner.namespace)
        codes = ", ".join(f.code for f in planned.result.errors)
        logger.warning(
            f"{owner.namespace}/{owner.name}: generation {owner.generation} is invalid ({codes}); nothing applied"
        )
    return publish(owner.namespace, owner.name, deployment, known=(body, planned.result)) or "Deleted"


REFUSED = "rejected_by_apiserver"
REFUSED_MESSAGE_MAX = 600
REFUSED_RETRY_S = 60


def _with_refusal(result: ValidationResult, body: Mapping[str, Any]) -> ValidationResult:
    """A refusal by the API server (_refused) holds for its generation: looks that only re-plan (child events,
    rechecks) keep it rather than report the spec valid again. A reconcile of the generation starts afresh."""
    status = body.get("status") or {}
    if status.get("observedGeneration") != (body.get("metadata") or {}).get("generation"):
        return result
    for found in status.get("findings") or []:
        if isinstance(found, Mapping) and found.get("code") == REFUSED:
            keys = ("field", "message", "fix")
            return result.refused(Finding(REFUSED, "error", *(str(found.get(k) or "") for k in keys)))
    return result


def _refused(body: Mapping[str, Any], planned: Plan, kind: str, error: ApiException, logger: Any) -> None:
    """The API server refused a child rendered from a spec the planner passed (422: a field it does not allow, an
    admission policy, an object of the same name made by someone else). Say why in status, as an error finding
    that holds for this generation, and try again only after a minute (the clash or the policy may go away)."""
    owner = _owner(body)
    reason = (_api_message(error) or str(error.reason))[:REFUSED_MESSAGE_MAX]
    finding = Finding(
        REFUSED,
        "error",
        "spec",
        f"the API server refused the {kind} rendered from this spec: {reason}",
        "change the spec so the field the message names is allowed, or ask the cluster admin about the policy "
        "that refuses it (or the owner of a clashing object); the operator tries again every minute",
    )
    publish(
        owner.namespace,
        owner.name,
        kube.read_serving_workload(owner.name, owner.namespace),
        known=(body, planned.result.refused(finding)),
    )
    metrics.RECONCILES.labels("error").inc()
    logger.warning(
        f"{owner.namespace}/{owner.name}: the API server refused the {kind} (422); retrying in {REFUSED_RETRY_S} s"
    )
    raise kopf.TemporaryError(f"{kind} refused by the API server: {reason}", delay=REFUSED_RETRY_S)


def _prune_workloads(owner: Owner, applied: dict[str, Any] | None, logger: Any) -> None:
    """A spec that moved between one node and several per replica renders the other workload kind: delete the
    one of the earlier generation (once the new one is applied)."""
    stale = [kind for kind in WORKLOAD_KINDS if applied is not None and kind != applied.get("kind")]
    for kind in stale:
        if kube.delete_workload(kind, owner.name, owner.namespace, owner.uid):
            logger.info(f"{owner.namespace}/{owner.name}: deleted the {kind} of an earlier generation")


def _api_message(error: ApiException) -> str:
    """The API server's own message (what it refused and why), shortened for a log line."""
    try:
        return str(json.loads(error.body or "{}").get("message") or "")[:REFUSED_MESSAGE_MAX]
    except (ValueError, AttributeError):
        return ""


def _timed(body: Mapping[str, Any], logger: Any) -> str:
    began = time.perf_counter()
    try:
        phase = reconcile(body, logger)
    except ApiException as error:
        metrics.RECONCILES.labels("error").inc()
        # A conflict or an unavailable apiserver passes; retry later rather than hammering it.
        raise kopf.TemporaryError(
            f"Kubernetes API error {error.status}: {error.reason}: {_api_message(error)}", delay=RETRY_DELAY_S
        ) from error
    finally:
        metrics.RECONCILE_SECONDS.observe(time.perf_counter() - began)
    metrics.RECONCILES.labels("invalid" if phase == "Invalid" else "applied").inc()
    return phase


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
def on_llama(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    _timed(body, logger)


def record_known_good(namespace: str, name: str) -> None:
    """A second look (handlers.rechecks): lastKnownGood is due once the configuration has served a while."""
    publish(namespace, name, kube.read_deployment(name, namespace))


@kopf.on.event(GROUP, VERSION, PLURAL)
def on_llama_event(event: kopf.RawEvent, **_: Any) -> None:
    body: Mapping[str, Any] = event["object"]
    meta: Mapping[str, Any] = body["metadata"]
    key = (str(meta["namespace"]), str(meta["name"]))
    if event["type"] == "DELETED":
        metrics.forget(key)
        rechecks.forget(key)
    else:
        rechecks.track(key, body.get("status") or {}, int(meta.get("generation") or 0))


def _child_changed(event_type: str | None, child: Mapping[str, Any], logger: Any) -> None:
    meta = child["metadata"]
    owner = (str(meta["namespace"]), str(meta["labels"][OWNER_LABEL]))
    try:
        if event_type == "DELETED":
            parent = kube.read_llama(owner[1], owner[0])
            if parent is None or (parent.get("metadata") or {}).get("deletionTimestamp"):
                return  # being deleted: the garbage collector takes the children
            logger.info(f"{child['kind']} {meta['name']} was deleted; re-applying")
            _timed(parent, logger)
        elif child["kind"] in WORKLOAD_KINDS:
            # Read afresh rather than trust the event's copy: an event handled late (a burst of them) would turn a
            # Running status back to Progressing, and post Events for transitions that never happened.
            workload = kube.read_workload(child["kind"], meta["name"], owner[0])
            if workload is not None:
                publish(*owner, workload, child_kind=child["kind"])
    except ApiException as error:
        # Event handlers are not retried; the next event of this child, or the resume of the owner, catches up.
        logger.warning(f"could not refresh {meta['name']}: Kubernetes API error {error.status}")


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


@kopf.on.event("leaderworkerset.x-k8s.io", "v1", "leaderworkersets", labels=CHILD_LABELS)
def on_leader_worker_set(type: str | None, body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    # Multi-node replicas (render/lws.py). Without the LWS API in the cluster kopf only warns and serves the rest.
    _child_changed(type, body, logger)
