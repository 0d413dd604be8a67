"""Why a deployment's pods do not serve, from their status as the scheduler and the kubelet wrote it (pure).

The Deployment only counts ready replicas; the reason a pod is not ready is on the pod: ``PodScheduled=False`` with
the scheduler's message (``0/3 nodes are available: 3 Insufficient nvidia.com/gpu``), a container waiting in
``ErrImagePull`` / ``ImagePullBackOff`` with the kubelet's message, a container that has not passed its startup
probe within its budget. ``readiness`` reads them into one cause, worst first, which becomes the ``PodsReady``
condition (``condition``) and, while a remediation waits, the reason it waits (health.policy). The messages are the
scheduler's and the kubelet's own words, trimmed, with anything that looks like a credential masked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from llama_operator.health.detect import CRASH_LOOP_BACK_OFF, START_FAILURES, containers_of, parse_time
from llama_operator.render.children import workload_config_hash
from llama_operator.render.labels import CONFIG_HASH_ANNOTATION
from llama_operator.render.status import Transition

CONDITION = "PodsReady"
# Reasons of the PodsReady condition. Failures need someone to act; the others pass on their own.
READY = "PodsReady"
NOT_DEPLOYED = "NotDeployed"
STARTING = "Starting"
NOT_READY = "NotReady"
UNSCHEDULABLE = "Unschedulable"
SCHEDULING_GATED = "SchedulingGated"
IMAGE_PULL_FAILED = "ImagePullFailed"
CONTAINER_CREATE_FAILED = "ContainerCreateFailed"
FAILED_CREATE = "FailedCreate"
STARTUP_PROBE_FAILING = "StartupProbeFailing"
CRASH_LOOP = CRASH_LOOP_BACK_OFF
# Worst first: a cause earlier in this list explains the deployment better than a later one.
FAILURES = (
    FAILED_CREATE,
    IMAGE_PULL_FAILED,
    CONTAINER_CREATE_FAILED,
    UNSCHEDULABLE,
    SCHEDULING_GATED,
    STARTUP_PROBE_FAILING,
    CRASH_LOOP,
)
# The kubelet's waiting reasons for an image it cannot pull (pkg/kubelet/images/types.go and the CRI's errors).
IMAGE_PULL_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "ImageInspectError",
        "RegistryUnavailable",
        "SignatureValidationFailed",
    }
)
CREATE_REASONS = START_FAILURES | {"PreStartHookError", "PostStartHookError"}
# A scheduler's message names each kind of node that does not fit; the kubelet's names the registry's answer.
MESSAGE_MAX = 1000

_SECRETS = (
    # user:password@ in a URL
    (re.compile(r"(?i)([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@"), r"\1***@"),
    # a bearer or basic credential
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 ***"),
    # query or key=value parameters that carry credentials (presigned URLs, tokens)
    (
        re.compile(
            r"(?i)\b([a-z0-9_.-]*(?:token|signature|credential|password|passwd|secret|api[_-]?key|access[_-]?key)"
            r"[a-z0-9_.-]*)=[^&\s\"',;]+"
        ),
        r"\1=***",
    ),
    # Hugging Face access tokens
    (re.compile(r"\bhf_[A-Za-z0-9]{16,}"), "hf_***"),
)


def clean(message: str, limit: int = MESSAGE_MAX) -> str:
    """A scheduler's or kubelet's message for a status: one line, credentials masked, at most ``limit`` chars."""
    text = " ".join(message.split())
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


@dataclass(frozen=True, slots=True)
class PodCause:
    """Why one pod (or the workload, for FailedCreate) does not serve."""

    reason: str
    message: str
    pod: str = ""
    # What identifies this cause beyond its reason and pod: the scheduler's message, the image, the container.
    detail: str = ""

    @property
    def failure(self) -> bool:
        return self.reason in FAILURES

    @property
    def key(self) -> tuple[str, str, str]:
        """Equal for the same cause seen again: a new key is worth a look, the same one is not."""
        return self.reason, self.pod, self.detail


@dataclass(frozen=True, slots=True)
class Readiness:
    """The pods of the configuration the workload runs: how many, how many ready, and the worst cause of the rest."""

    wanted: int
    pods: int
    ready: int
    cause: PodCause | None
    # Other pods with the same reason as ``cause``.
    others: int = 0

    @property
    def all_ready(self) -> bool:
        return self.cause is None and self.ready >= self.wanted


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _pod_conditions(pod: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    entries = _map(pod.get("status")).get("conditions")
    found: dict[str, Mapping[str, Any]] = {}
    for entry in entries if isinstance(entries, list) else []:
        data = _map(entry)
        if isinstance(data.get("type"), str):
            found[data["type"]] = data
    return found


def _container_status(pod: Mapping[str, Any], container: str, init: bool) -> Mapping[str, Any]:
    entries = _map(pod.get("status")).get("initContainerStatuses" if init else "containerStatuses")
    for entry in entries if isinstance(entries, list) else []:
        if _map(entry).get("name") == container:
            return _map(entry)
    return {}


def _said(status: Mapping[str, Any], reason: str) -> str:
    """The kubelet's message of a waiting container (its reason when it gave none), cleaned."""
    message = _map(_map(status.get("state")).get("waiting")).get("message")
    return clean(message if isinstance(message, str) and message else reason)


def pod_cause(
    pod: Mapping[str, Any], now: datetime | None = None, startup_budgets: Mapping[str, int] | None = None
) -> PodCause | None:
    """Why ``pod`` does not serve (None: it is ready). ``startup_budgets``: the seconds each container's startup
    probe allows (startup_budgets()); a container not ready past its budget at ``now`` is StartupProbeFailing."""
    name = str(_map(pod.get("metadata")).get("name") or "")
    conditions = _pod_conditions(pod)
    scheduled = conditions.get("PodScheduled")
    if scheduled is not None and scheduled.get("status") == "False":
        reason = SCHEDULING_GATED if scheduled.get("reason") == SCHEDULING_GATED else UNSCHEDULABLE
        said = clean(str(scheduled.get("message") or scheduled.get("reason") or "not scheduled"))
        return PodCause(reason, f"pod {name}: {said}", name, said)
    ready = conditions.get("Ready")
    if ready is not None and ready.get("status") == "True":
        return None
    states = containers_of(pod)
    if not states:
        if scheduled is None:
            return PodCause(STARTING, f"pod {name}: waiting to be scheduled", name)
        return PodCause(STARTING, f"pod {name}: scheduled, its containers are being created", name)
    found: list[PodCause] = []
    for state in states:
        waiting = state.waiting_reason
        where = f"container {state.container} of pod {name}"
        status = _container_status(pod, state.container, state.init)
        if waiting in IMAGE_PULL_REASONS:
            image = str(status.get("image") or "")
            found.append(PodCause(IMAGE_PULL_FAILED, f"{where}: {waiting}: {_said(status, waiting)}", name, image))
        elif waiting in CREATE_REASONS:
            said = _said(status, waiting)
            found.append(PodCause(CONTAINER_CREATE_FAILED, f"{where}: {waiting}: {said}", name, state.container))
        elif waiting == CRASH_LOOP_BACK_OFF:
            message = f"{where} is crash-looping (the CrashLooping condition says why)"
            found.append(PodCause(CRASH_LOOP, message, name, state.container))
        elif state.ready or (state.init and state.termination is not None and state.termination.exit_code == 0):
            continue
        elif state.running_since is not None and status.get("started") is True:
            # Past its startup probe: the readiness probe fails (an engine that stopped answering /health).
            message = f"{where} started but is not ready (its readiness probe fails)"
            found.append(PodCause(NOT_READY, message, name, state.container))
        elif state.running_since is not None:
            budget = (startup_budgets or {}).get(state.container)
            since = parse_time((ready or {}).get("lastTransitionTime")) or state.running_since
            if budget is not None and now is not None and (now - since).total_seconds() > budget:
                message = (
                    f"{where} has not become ready within its startup probe's budget of {budget}s; the kubelet "
                    "restarts it after that many seconds of failed probes"
                )
                found.append(PodCause(STARTUP_PROBE_FAILING, message, name, state.container))
            else:
                found.append(PodCause(STARTING, f"{where} is starting (not ready yet)", name, state.container))
        else:
            said = f": {waiting}" if waiting else ""
            found.append(PodCause(STARTING, f"{where} is being started{said}", name, state.container))
    return _worst(found) if found else None


def _rank(cause: PodCause) -> tuple[int, str]:
    order = FAILURES.index(cause.reason) if cause.reason in FAILURES else len(FAILURES)
    return order, cause.pod


def _worst(causes: Iterable[PodCause]) -> PodCause:
    return min(causes, key=_rank)


def _selected(pod: Mapping[str, Any], config_hash: str | None) -> bool:
    metadata = _map(pod.get("metadata"))
    if metadata.get("deletionTimestamp"):
        return False  # terminating: it is going away whatever it says
    return config_hash is None or _map(metadata.get("annotations")).get(CONFIG_HASH_ANNOTATION) == config_hash


def _count(value: object, default: int) -> int:
    """A non-negative integer field of an API object, or the API's default when it is absent (or not one)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default


def wanted_pods(workload: Mapping[str, Any]) -> int:
    """Pods the workload wants: a Deployment's replicas, a LeaderWorkerSet's groups times their size."""
    spec = _map(workload.get("spec"))
    count = _count(spec.get("replicas"), 1)
    if workload.get("kind") == "LeaderWorkerSet":
        count *= _count(_map(spec.get("leaderWorkerTemplate")).get("size"), 1)
    return count


def _templates(workload: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    spec = _map(workload.get("spec"))
    if workload.get("kind") == "LeaderWorkerSet":
        group = _map(spec.get("leaderWorkerTemplate"))
        return [_map(group.get("leaderTemplate")), _map(group.get("workerTemplate"))]
    return [_map(spec.get("template"))]


def startup_budgets(workload: Mapping[str, Any]) -> dict[str, int]:
    """Seconds each container of the workload's pod templates has to pass its startup probe before the kubelet
    restarts it: initialDelaySeconds + failureThreshold x periodSeconds (the kubelet's defaults: 0, 3, 10)."""
    budgets: dict[str, int] = {}
    for template in _templates(workload):
        containers = _map(template.get("spec")).get("containers")
        for container in containers if isinstance(containers, list) else []:
            data = _map(container)
            probe = _map(data.get("startupProbe"))
            if probe and isinstance(data.get("name"), str):
                delay, failures, period = (
                    _count(probe.get(key), default)
                    for key, default in (("initialDelaySeconds", 0), ("failureThreshold", 3), ("periodSeconds", 10))
                )
                budgets[data["name"]] = delay + failures * period
    return budgets


def _failed_create(workload: Mapping[str, Any]) -> PodCause | None:
    """The Deployment's ReplicaFailure condition: its ReplicaSet could not create a pod (a quota, an admission
    policy), so there is no pod to carry the reason."""
    for entry in _map(workload.get("status")).get("conditions") or []:
        data = _map(entry)
        if data.get("type") == "ReplicaFailure" and data.get("status") == "True":
            said = clean(str(data.get("message") or data.get("reason") or "pods cannot be created"))
            return PodCause(FAILED_CREATE, f"pods cannot be created: {said}", "", said)
    return None


def readiness(
    pods: Sequence[Mapping[str, Any]], workload: Mapping[str, Any] | None, now: datetime | None = None
) -> Readiness:
    """The pods of the configuration ``workload`` runs (its config-hash annotation; all non-terminating pods when
    it has none) and the worst cause among those not ready."""
    if workload is None:
        return Readiness(0, 0, 0, PodCause(NOT_DEPLOYED, "no serving workload"))
    config_hash = workload_config_hash([dict(workload)])
    selected = [pod for pod in pods if isinstance(pod, Mapping) and _selected(pod, config_hash)]
    budgets = startup_budgets(workload)
    wanted = wanted_pods(workload)
    causes = [c for c in (pod_cause(pod, now, budgets) for pod in selected) if c is not None]
    ready = len(selected) - len(causes)
    failed = _failed_create(workload) if len(selected) < wanted else None
    if failed is not None:
        causes.append(failed)
    if not causes and ready < wanted:
        causes.append(PodCause(STARTING, f"{ready}/{wanted} pods exist, waiting for the rest to be created"))
    if not causes:
        return Readiness(wanted, len(selected), ready, None)
    worst = _worst(causes)
    others = sum(1 for c in causes if c.reason == worst.reason) - 1
    return Readiness(wanted, len(selected), ready, worst, others)


ALL_READY = (READY, "", "")


def failure_key(pods: Sequence[Mapping[str, Any]]) -> tuple[str, str, str] | None:
    """The worst failure among ``pods`` (any configuration), as PodCause.key; None when none fails."""
    causes = [c for c in (pod_cause(pod) for pod in pods if _selected(pod, None)) if c is not None and c.failure]
    return _worst(causes).key if causes else None


def state_key(pods: Sequence[Mapping[str, Any]]) -> tuple[str, str, str] | None:
    """What a pod event compares with the last one's to decide whether status needs a look (no API call when it
    does not): the worst failure's PodCause.key, ALL_READY when every pod (not terminating) is ready, None while
    some are on their way."""
    failure = failure_key(pods)
    if failure is not None:
        return failure
    live = [pod for pod in pods if _selected(pod, None)]
    return ALL_READY if live and all(pod_cause(pod) is None for pod in live) else None


def worth_a_look(previous: tuple[str, str, str] | None, now: tuple[str, str, str] | None) -> bool:
    """Whether the pods' state moved in a way status must show: into a failure or another one, out of a failure,
    or to all ready (the Deployment's own event may have been handled before the pods' index had caught up).
    Pods merely starting again (a rollout) are the Deployment's events' to report."""
    if now == previous:
        return False
    return now is not None or (previous is not None and previous != ALL_READY)


def condition(seen: Readiness) -> tuple[bool, str, str]:
    """The PodsReady condition: (status, reason, message)."""
    cause = seen.cause
    if cause is None:
        if seen.wanted == 0:
            return True, READY, "no pods wanted (0 replicas)"
        return True, READY, f"{seen.ready}/{seen.wanted} pods ready"
    if cause.reason == NOT_DEPLOYED:
        return False, NOT_DEPLOYED, cause.message
    more = f" (and {seen.others} more pod(s) {cause.reason})" if seen.others else ""
    return False, cause.reason, f"{seen.ready}/{seen.wanted} pods ready; {cause.message}{more}"


def _pods_ready(status: Mapping[str, Any]) -> Mapping[str, Any]:
    entries = status.get("conditions")
    for entry in entries if isinstance(entries, list) else []:
        if _map(entry).get("type") == CONDITION:
            return _map(entry)
    return {}


def reason_transitions(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Transition]:
    """PodsReady changes that keep its status but change its reason to or from a failure (Unschedulable, then
    ImagePullFailed once a node is found): each is an Event too. Status changes are render.status.transitions'."""
    before, after = _pods_ready(old), _pods_ready(new)
    if not before or not after or before.get("status") != after.get("status"):
        return []
    reasons = (str(before.get("reason") or ""), str(after.get("reason") or ""))
    if reasons[0] == reasons[1] or not any(r in FAILURES for r in reasons):
        return []
    return [Transition(CONDITION, str(after["status"]), reasons[1], str(after.get("message") or ""))]


def warning(transition: Transition) -> bool:
    """Whether a transition's Event is a Warning: PodsReady's when it turns to a failure (a pod that is merely
    starting is Normal), the other conditions' by render.status.Transition.warning."""
    if transition.type == CONDITION:
        return transition.status == "False" and transition.reason in FAILURES
    return transition.warning
