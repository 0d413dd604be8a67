"""Crash-loop detection and remediation for running LlamaDeployments (the kopf side of health/).

Pods are held in a kopf index by their LlamaDeployment, so no pod event lists pods from the API. On each pod event
of a deployment (every few seconds while a crash loop is being handled, and when Prometheus shows a new crash
loop: handlers.fleet), one evaluation: detect from pod status (and from kube-state-metrics, read from the fleet's
latest Prometheus answer, when LLAMAOPS_PROMETHEUS_URL is set), classify and decide (health.check), compute the
desired state with that decision (desired/: status, Events, and the children again when the overrides changed) and
hand it to handlers.writer.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from llama_operator.api import parse_llama, parse_status
from llama_operator.desired import desired_state
from llama_operator.handlers import autoscaling, fleet, kube, locks, metrics, nodes, podindex, rechecks, rollout, writer
from llama_operator.handlers.reconcile import inputs, refresh
from llama_operator.health import (
    CrashLoopObservation,
    check,
    combine,
    config_hash,
    crash_since,
    detect_from_metrics,
    detect_from_pods,
)
from llama_operator.health import causes as pod_causes
from llama_operator.health.detect import unexplained_crash, with_group_restarts
from llama_operator.health.policy import watched_config
from llama_operator.render.labels import CONFIG_HASH_ANNOTATION, MANAGED_BY, OWNER_LABEL, SPEC_GENERATION_ANNOTATION
from llama_operator.render.lws import group_restarts

_index = podindex.INDEX
POD_LABELS: dict[str, Any] = {"app.kubernetes.io/managed-by": MANAGED_BY, OWNER_LABEL: kopf.PRESENT}


@kopf.index("", "v1", "pods", labels=POD_LABELS)
def llama_pods(namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict[tuple[str, str], Any]:
    return {(namespace or "", labels[OWNER_LABEL]): essentials(body)}


def essentials(pod: Mapping[str, Any]) -> dict[str, Any]:
    """What crash-loop detection and the pods' causes read of a pod (health.detect, health.causes: the
    PodScheduled and Ready conditions). The index holds one per pod for as long as the pod lives: without the spec
    and managedFields it holds a fraction of the body."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    kept = ("phase", "conditions", "containerStatuses", "initContainerStatuses")
    return {
        "metadata": {
            k: meta[k] for k in ("name", "namespace", "labels", "annotations", "deletionTimestamp") if k in meta
        },
        "status": {k: status[k] for k in kept if k in status},
    }


def observe(
    key: tuple[str, str],
    pods: list[dict[str, Any]],
    since: datetime | None,
    config_hash: str | None,
    group_set: str | None = None,
) -> CrashLoopObservation:
    """Pod status always (and, for a multi-node replica, its LeaderWorkerSet's group recreations); kube-state-metrics
    too when Prometheus is configured and its latest answer for the fleet is fresh (handlers.fleet: no query here)."""
    namespace = key[0]
    selected = {CONFIG_HASH_ANNOTATION: config_hash} if config_hash else None
    from_pods = detect_from_pods(pods, since=since, annotations=selected)
    if group_set is not None:
        recreated = group_restarts(kube.list_events(namespace, "LeaderWorkerSet", group_set))
        from_pods = with_group_restarts(from_pods, recreated.count, recreated.first, recreated.last, since)
    now = datetime.now(UTC)
    if from_pods.crash_looping:
        metrics.crash_loop_seen("PodStatus", key, from_pods.last_crash, now)
    series = fleet.VIEW.latest(key)
    if series is None:
        return from_pods  # no Prometheus, or no fresh answer from it (handlers.fleet logs why)
    names = [p["metadata"]["name"] for p in pods if _matches(p, selected)]
    from_metrics = detect_from_metrics(series.of_pods(names), since=since)
    if from_metrics.crash_looping:
        metrics.crash_loop_seen("Prometheus", key, from_metrics.last_crash, now)
    return combine(from_pods, from_metrics)


# Log tails already read, by the crash they explain: a crash loop is evaluated on every pod event.
_LOG_TAILS: dict[tuple[str, str, str, str], str] = {}
_LOG_TAILS_MAX = 256


def with_logged_words(
    namespace: str, pods: list[dict[str, Any]], observation: CrashLoopObservation
) -> CrashLoopObservation:
    """The crash's termination with the container's last log lines as its message, when the kubelet recorded none
    (an exit 0: health.detect.unexplained_crash says why)."""
    source = unexplained_crash(pods, observation)
    termination = observation.termination
    if source is None or termination is None:
        return observation
    key = (namespace, source.pod, source.container, str(termination.finished_at))
    text = _LOG_TAILS.get(key)
    if text is None:
        text = kube.container_log_tail(namespace, source.pod, source.container, previous=source.previous)
        if len(_LOG_TAILS) >= _LOG_TAILS_MAX:
            _LOG_TAILS.clear()
        _LOG_TAILS[key] = text
    if not text:
        return observation
    return dataclasses.replace(observation, termination=dataclasses.replace(termination, message=text))


def _matches(pod: Mapping[str, Any], annotations: Mapping[str, str] | None) -> bool:
    have = (pod.get("metadata") or {}).get("annotations") or {}
    return all(have.get(k) == v for k, v in (annotations or {}).items())


def evaluate(namespace: str, name: str, pods: list[dict[str, Any]], logger: kopf.Logger) -> None:
    """One look at a deployment's pods; serialised per deployment so two events never remediate twice. Read, check
    (health), compute the desired state with the decision (desired), write it (handlers.writer): one read and one
    plan of the object."""
    with locks.object_lock(namespace, name):
        parent = kube.read_llama(name, namespace)
        if parent is None or (parent.get("metadata") or {}).get("deletionTimestamp"):
            return
        resource = parse_llama(parent)
        generation = int(parent["metadata"].get("generation", 1))
        workload = kube.read_serving_workload(name, namespace)
        if resource is None or not _current(workload, generation):
            return
        monitors, knowledge = kube.serves_service_monitors(), nodes.knowledge()
        status = parse_status(parent)
        group_set = name if (workload or {}).get("kind") == "LeaderWorkerSet" else None
        # The pods of the configuration the workload runs: those of a replaced one say nothing about it. While a
        # progressive rollout moves, the previous configuration's: the rollout judges the new one's pods itself.
        since = crash_since(status, generation)
        watched = watched_config(status, generation) or config_hash(workload)
        observation = observe((namespace, name), pods, since, watched, group_set)
        observation = with_logged_words(namespace, pods, observation)
        now = datetime.now(UTC)
        checked = check(
            spec=resource.spec,
            generation=generation,
            status=status,
            observation=observation,
            now=now,
            knowledge=knowledge,  # as reconcile plans: a safe maxModelLen on an uncatalogued GPU too
            waiting=pod_causes.readiness(pods, workload, now).cause,
        )
        applies = checked.decision.overrides_changed
        looked = inputs(service_monitors=monitors, knowledge=knowledge)
        state = desired_state(parent, looked, workload=workload, now=now, apply=applies, check=checked, pods=pods)
        if state is None:
            return  # the spec does not run: nothing to remediate
        state = rollout.steered(state)  # a progressive rollout keeps its stable template and lastKnownGood
        state = autoscaling.autoscaled(state)  # paused while the crash loop lasts
        if applies:
            logger.warning(f"{namespace}/{name}: {checked.decision.outcome}: {checked.decision.action}; re-rendering")
        writer.write(state, logger)


def _current(workload: Mapping[str, Any] | None, generation: int) -> bool:
    """The serving workload renders this generation: until the reconcile applies a new spec, its pods are an older
    generation's and remediation waits (pure)."""
    annotations = ((workload or {}).get("metadata") or {}).get("annotations") or {}
    return workload is not None and int(annotations.get(SPEC_GENERATION_ANNOTATION, 0)) >= generation


def _quiet(pods: list[dict[str, Any]]) -> bool:
    """No container of these pods ever terminated, restarted or failed to start (pure)."""
    seen = detect_from_pods(pods)
    return not seen.crash_looping and seen.termination is None and seen.restarts == 0


def _pods(index: kopf.Index[tuple[str, str], Any], key: tuple[str, str]) -> list[dict[str, Any]]:
    return [dict(pod) for pod in index.get(key, [])]


# The state each deployment's pods showed at their last event (health.causes.state_key), while it has pods.
_states: dict[tuple[str, str], tuple[str, str, str] | None] = {}
_states_lock = threading.Lock()


def state_changed(key: tuple[str, str], pods: list[dict[str, Any]]) -> bool:
    """Whether a quiet deployment's status needs a look at this pod event: its pods now fail for another reason,
    stopped failing, or are all ready (health.causes.worth_a_look). The first event seen of a deployment (after a
    start) asks for one only for a failure: the resume's reconcile has just written the rest."""
    state = pod_causes.state_key(pods)
    with _states_lock:
        seen = key in _states
        previous = _states.pop(key, None)
        if pods:
            _states[key] = state
    if not seen:
        return state is not None and state != pod_causes.ALL_READY
    return pod_causes.worth_a_look(previous, state)


def _forget_state(key: tuple[str, str]) -> None:
    with _states_lock:
        _states.pop(key, None)


@kopf.on.event("", "v1", "pods", labels=POD_LABELS)
def on_pod(namespace: str | None, labels: kopf.Labels, logger: kopf.Logger, **kwargs: Any) -> None:
    # kopf passes the index as the keyword llama_pods (its function's name); the other looks use it too.
    podindex.keep(kwargs)
    key = (namespace or "", labels[OWNER_LABEL])
    pods = _pods(kwargs["llama_pods"], key)
    changed = state_changed(key, pods)
    try:
        if _quiet(pods) and not rechecks.wants(key, rechecks.CRASH_LOOP):
            # Nothing crashed and no crash loop is being handled: nothing to decide, so no API call unless the pods
            # now fail for another reason (unschedulable, an image that cannot be pulled), stopped failing or are
            # all ready. At scale, pod events are most of the operator's events; the Deployment's own events keep
            # the rest of status current.
            if changed:
                refresh(*key)
            return
        evaluate(key[0], key[1], pods, logger)
    except ApiException as error:
        # Event handlers are not retried; the periodic recheck (handlers.rechecks) or the next pod event catches up
        # (it sees the failure as new again).
        _forget_state(key)
        logger.warning(f"crash-loop check of {key[0]}/{key[1]} failed: Kubernetes API error {error.status}")


def recheck(namespace: str, name: str) -> None:
    """A second look (handlers.rechecks) while a crash loop is handled: recovery is declared after the new pods
    have run healthy a while, which no pod event announces."""
    index = _index.get("pods")
    pods = _pods(index, (namespace, name)) if index is not None else kube.list_pods(namespace, name)
    evaluate(namespace, name, pods, logging.getLogger(__name__))
