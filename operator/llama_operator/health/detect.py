"""Crash-loop detection from pod status snapshots or from kube-state-metrics series (pure).

A serving container never exits on purpose, so every termination counts as a crash, exit code 0 included:
upstream vLLM 0.32 exits 0 after its engine dies (tests/fixtures/vllm/). A deployment is crash-looping when a
container of one of its pods waits in CrashLoopBackOff or has restarted at least ``min_restarts`` times, with a
crash after ``since`` (the last remediation: earlier crashes belong to the configuration it replaced).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from llama_operator.health.classify import Termination
from llama_operator.health.promql import Sample, label_regex_for, quote
from llama_operator.render.children import workload_config_hash

Source = Literal["PodStatus", "Prometheus"]
CRASH_LOOP_BACK_OFF = "CrashLoopBackOff"
# Waiting reasons that say the container cannot even start: crash-loop-like, and not a crash of the engine.
START_FAILURES = frozenset({"CreateContainerConfigError", "CreateContainerError", "RunContainerError"})


@dataclass(frozen=True, slots=True)
class ContainerState:
    """One container's status, reduced to what detection reads."""

    pod: str
    container: str
    init: bool
    restart_count: int
    ready: bool
    running_since: datetime | None
    waiting_reason: str
    last_termination: Termination | None
    termination: Termination | None


@dataclass(frozen=True, slots=True)
class CrashLoopObservation:
    """What one look at a deployment's pods (or its metrics) says about crashes."""

    crash_looping: bool
    source: Source
    # The most recent crash, with the message to classify (Prometheus has no messages: empty there).
    termination: Termination | None = None
    pod: str = ""
    container: str = ""
    restarts: int = 0
    first_crash: datetime | None = None
    last_crash: datetime | None = None
    crashing_pods: tuple[str, ...] = ()
    # Every container of every selected pod is running and ready, none crashed after `since`: since when (the
    # latest start). None when any is not, or when the source cannot tell (Prometheus).
    healthy_since: datetime | None = None
    pods: int = 0
    why: str = ""


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 timestamp (as the API server writes it) or a datetime, as an aware datetime; None otherwise."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit() and len(value) < 12:
        return int(value)
    return None


def termination_from_status(terminated: object) -> Termination | None:
    """A ``terminated`` container state (``state.terminated`` or ``lastState.terminated``), or None."""
    data = _map(terminated)
    if not data:
        return None
    reason, message = data.get("reason"), data.get("message")
    return Termination(
        exit_code=_int(data.get("exitCode", data.get("exit_code"))),
        reason=reason if isinstance(reason, str) else "",
        message=message if isinstance(message, str) else "",
        started_at=parse_time(data.get("startedAt", data.get("started_at"))),
        finished_at=parse_time(data.get("finishedAt", data.get("finished_at"))),
    )


def containers_of(pod: Mapping[str, Any]) -> tuple[ContainerState, ...]:
    """The container statuses of a pod (a Kubernetes object as a mapping, camelCase). Never raises."""
    name = _map(pod.get("metadata")).get("name")
    pod_name = name if isinstance(name, str) else ""
    status = _map(pod.get("status"))
    states: list[ContainerState] = []
    for key, init in (("initContainerStatuses", True), ("containerStatuses", False)):
        entries = status.get(key)
        for entry in entries if isinstance(entries, list) else []:
            data = _map(entry)
            state, last = _map(data.get("state")), _map(data.get("lastState"))
            waiting = _map(state.get("waiting")).get("reason")
            container = data.get("name")
            states.append(
                ContainerState(
                    pod=pod_name,
                    container=container if isinstance(container, str) else "",
                    init=init,
                    restart_count=max(0, _int(data.get("restartCount")) or 0),
                    ready=data.get("ready") is True,
                    running_since=parse_time(_map(state.get("running")).get("startedAt")),
                    waiting_reason=waiting if isinstance(waiting, str) else "",
                    last_termination=termination_from_status(last.get("terminated")),
                    termination=termination_from_status(state.get("terminated")),
                )
            )
    return tuple(states)


def _selected(pod: Mapping[str, Any], labels: Mapping[str, str], annotations: Mapping[str, str]) -> bool:
    metadata = _map(pod.get("metadata"))
    if metadata.get("deletionTimestamp"):
        return False  # terminating: its crashes are the old configuration's
    have_labels, have_annotations = _map(metadata.get("labels")), _map(metadata.get("annotations"))
    return all(have_labels.get(k) == v for k, v in labels.items()) and all(
        have_annotations.get(k) == v for k, v in annotations.items()
    )


def _after(moment: datetime | None, since: datetime | None) -> bool:
    # A crash with no time (an API server would always give one) is counted: missing a crash loop is worse.
    return since is None or moment is None or moment > since


def detect_from_pods(
    pods: Iterable[Mapping[str, Any]],
    *,
    since: datetime | None = None,
    min_restarts: int = 1,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    containers: frozenset[str] | None = None,
) -> CrashLoopObservation:
    """Crash-loop verdict from pod objects (kopf bodies or API dicts). Pass the pods of the current revision (or
    select them with ``labels`` / ``annotations``, e.g. the config-hash annotation); ``containers`` limits the
    look to named containers. Never raises."""
    labels, annotations = labels or {}, annotations or {}
    selected = [pod for pod in pods if isinstance(pod, Mapping) and _selected(pod, labels, annotations)]
    crashes: list[tuple[ContainerState, Termination]] = []
    looping: list[ContainerState] = []
    restarts = 0
    healthy = bool(selected)
    latest_start: datetime | None = None
    for pod in selected:
        states = [s for s in containers_of(pod) if containers is None or s.container in containers]
        if not states:
            healthy = False
        for state in states:
            crashed = [t for t in (state.termination, state.last_termination) if t is not None]
            recent = [t for t in crashed if _after(t.finished_at, since)]
            crashes += [(state, t) for t in recent]
            if state.init:
                # An init container that finished (exit 0) is done, not crashed.
                recent = [t for t in recent if t.exit_code != 0]
                if recent or state.waiting_reason == CRASH_LOOP_BACK_OFF:
                    looping.append(state)
                    restarts += state.restart_count
                    healthy = False
                continue
            if recent:
                restarts += state.restart_count
                if state.waiting_reason == CRASH_LOOP_BACK_OFF or state.restart_count >= min_restarts:
                    looping.append(state)
                elif state.termination is not None:
                    looping.append(state)  # terminated and not (yet) restarted: a pod that will not come back
            elif state.waiting_reason in START_FAILURES:
                looping.append(state)
            if recent or not state.ready or state.running_since is None:
                healthy = False
            elif latest_start is None or state.running_since > latest_start:
                latest_start = state.running_since
    crashes = [(s, t) for s, t in crashes if not (s.init and t.exit_code == 0)]
    latest = max(crashes, key=lambda c: _sort_key(c[1].finished_at), default=None)
    times = [t.finished_at for _, t in crashes if t.finished_at is not None]
    crash_looping = bool(looping)
    why = ""
    if crash_looping:
        first = looping[0]
        why = (
            f"container {first.container} of pod {first.pod}: "
            + (f"waiting in {first.waiting_reason}, " if first.waiting_reason else "")
            + f"{first.restart_count} restart(s)"
        )
    return CrashLoopObservation(
        crash_looping=crash_looping,
        source="PodStatus",
        termination=latest[1] if latest else None,
        pod=latest[0].pod if latest else (looping[0].pod if looping else ""),
        container=latest[0].container if latest else (looping[0].container if looping else ""),
        restarts=restarts,
        first_crash=min(times, default=None),
        last_crash=max(times, default=None),
        crashing_pods=tuple(sorted({s.pod for s in looping})),
        healthy_since=latest_start if healthy and not crashes else None,
        pods=len(selected),
        why=why,
    )


def _sort_key(moment: datetime | None) -> datetime:
    return moment or datetime.min.replace(tzinfo=UTC)


# --- Prometheus (kube-state-metrics) ---


@dataclass(frozen=True, slots=True)
class CrashLoopQueries:
    """The PromQL instant queries detection needs, for a set of pods in one namespace."""

    restarts: str
    waiting: str
    last_terminated_reason: str
    last_terminated_exit_code: str
    last_terminated_time: str

    def as_dict(self) -> dict[str, str]:
        return {
            "restarts": self.restarts,
            "waiting": self.waiting,
            "last_terminated_reason": self.last_terminated_reason,
            "last_terminated_exit_code": self.last_terminated_exit_code,
            "last_terminated_time": self.last_terminated_time,
        }


def crash_loop_queries(namespace: str, pods: Sequence[str], container: str | None = None) -> CrashLoopQueries:
    """kube-state-metrics selects pods by name (pod labels are not exported without an allowlist): name them."""
    selector = f"namespace={quote(namespace)},pod=~{quote(label_regex_for(pods))}"
    if container is not None:
        selector += f",container={quote(container)}"
    return CrashLoopQueries(
        restarts=f"kube_pod_container_status_restarts_total{{{selector}}}",
        waiting=f"kube_pod_container_status_waiting_reason{{{selector}}} == 1",
        last_terminated_reason=f"kube_pod_container_status_last_terminated_reason{{{selector}}} == 1",
        last_terminated_exit_code=f"kube_pod_container_status_last_terminated_exitcode{{{selector}}}",
        last_terminated_time=f"kube_pod_container_status_last_terminated_timestamp{{{selector}}}",
    )


@dataclass(frozen=True, slots=True)
class CrashLoopMetrics:
    """The results of ``crash_loop_queries``, one tuple of samples per query."""

    restarts: tuple[Sample, ...] = ()
    waiting: tuple[Sample, ...] = ()
    last_terminated_reason: tuple[Sample, ...] = ()
    last_terminated_exit_code: tuple[Sample, ...] = ()
    last_terminated_time: tuple[Sample, ...] = ()

    def of_pods(self, pods: Collection[str]) -> CrashLoopMetrics:
        """Only the series of these pods (by name)."""
        names = frozenset(pods)

        def kept(samples: tuple[Sample, ...]) -> tuple[Sample, ...]:
            return tuple(s for s in samples if s.labels.get("pod") in names)

        return CrashLoopMetrics(
            kept(self.restarts),
            kept(self.waiting),
            kept(self.last_terminated_reason),
            kept(self.last_terminated_exit_code),
            kept(self.last_terminated_time),
        )


# The series of crash_loop_queries by metric name, and the CrashLoopMetrics field each fills.
FLEET_SERIES = {
    "kube_pod_container_status_restarts_total": "restarts",
    "kube_pod_container_status_waiting_reason": "waiting",
    "kube_pod_container_status_last_terminated_reason": "last_terminated_reason",
    "kube_pod_container_status_last_terminated_exitcode": "last_terminated_exit_code",
    "kube_pod_container_status_last_terminated_timestamp": "last_terminated_time",
}
_RESTARTS = "kube_pod_container_status_restarts_total"


def fleet_crash_query(namespaces: str | None = None) -> str:
    """One instant query for what ``crash_loop_queries`` asks of a few pods, for every pod of the namespaces
    matching ``namespaces`` (a regular expression; None: all) at once. It answers only for containers that crashed
    or wait: kube-state-metrics exports the waiting and last-terminated series for those alone, and the restart
    counter is kept where it is above 0. So the answer grows with the containers that crashed, not with the fleet.
    ``or`` matches series without their metric name unless told otherwise: ``on(__name__, ...)`` keeps a
    container's restart counter and its other series apart."""
    where = f"namespace=~{quote(namespaces)}" if namespaces is not None else ""
    others = "|".join(name.removeprefix("kube_pod_container_status_") for name in FLEET_SERIES if name != _RESTARTS)
    restarts = f"{_RESTARTS}{{{where}}}" if where else _RESTARTS
    rest = f'{{__name__=~"kube_pod_container_status_({others})"' + (f",{where}}}" if where else "}")
    return f"{restarts} > 0 or on(__name__, namespace, pod, container) {rest}"


Owner = TypeVar("Owner", bound=Hashable)


def split_fleet_metrics(
    samples: Iterable[Sample], owner: Callable[[str, str], Owner | None]
) -> dict[Owner, CrashLoopMetrics]:
    """The answer to ``fleet_crash_query`` per deployment: ``owner(namespace, pod)`` says whose pod it is (None:
    not one the operator manages, left out). Each deployment gets what ``crash_loop_queries`` would have
    answered for its pods."""
    fields: dict[Owner, dict[str, list[Sample]]] = {}
    for sample in samples:
        field = FLEET_SERIES.get(sample.labels.get("__name__", ""))
        if field is None:
            continue
        key = owner(sample.labels.get("namespace", ""), sample.labels.get("pod", ""))
        if key is not None:
            fields.setdefault(key, {}).setdefault(field, []).append(sample)
    return {key: CrashLoopMetrics(**{f: tuple(v) for f, v in found.items()}) for key, found in fields.items()}


def _key(sample: Sample) -> tuple[str, str]:
    return sample.labels.get("pod", ""), sample.labels.get("container", "")


def detect_from_metrics(
    metrics: CrashLoopMetrics, *, since: datetime | None = None, min_restarts: int = 1
) -> CrashLoopObservation:
    """Crash-loop verdict from kube-state-metrics series. Termination messages are not exported, so the
    observation carries exit code and reason only: classify the message from pod status when it is at hand."""
    restarts = {_key(s): int(s.value) for s in metrics.restarts if s.value == s.value and s.value >= 0}
    waiting = {_key(s): s.labels.get("reason", "") for s in metrics.waiting if s.value == 1}
    reasons = {_key(s): s.labels.get("reason", "") for s in metrics.last_terminated_reason if s.value == 1}
    exit_codes = {_key(s): int(s.value) for s in metrics.last_terminated_exit_code if abs(s.value) < 1 << 31}
    finished = {
        _key(s): datetime.fromtimestamp(s.value, UTC)
        for s in metrics.last_terminated_time
        if 0 < s.value < 1e11  # seconds since the epoch; anything else is not a time
    }
    looping: list[tuple[str, str]] = []
    for key in sorted(set(restarts) | set(waiting)):
        count = restarts.get(key, 0)
        recent = _after(finished.get(key), since) and (count > 0 or key in reasons)
        if recent and (waiting.get(key) == CRASH_LOOP_BACK_OFF or count >= min_restarts):
            looping.append(key)
    times = [finished[k] for k in looping if k in finished]
    latest = max(looping, key=lambda k: _sort_key(finished.get(k)), default=None)
    termination = (
        Termination(exit_code=exit_codes.get(latest), reason=reasons.get(latest, ""), finished_at=finished.get(latest))
        if latest
        else None
    )
    return CrashLoopObservation(
        crash_looping=bool(looping),
        source="Prometheus",
        termination=termination,
        pod=latest[0] if latest else "",
        container=latest[1] if latest else "",
        restarts=sum(restarts.get(k, 0) for k in looping),
        first_crash=min(times, default=None),
        last_crash=max(times, default=None),
        crashing_pods=tuple(sorted({pod for pod, _ in looping})),
        pods=len({pod for pod, _ in restarts}),
        why=(
            f"container {latest[1]} of pod {latest[0]}: {restarts.get(latest, 0)} restart(s)"
            + (f", waiting in {waiting[latest]}" if latest in waiting else "")
            + " (kube-state-metrics)"
            if latest
            else ""
        ),
    )


def combine(from_pods: CrashLoopObservation | None, from_metrics: CrashLoopObservation | None) -> CrashLoopObservation:
    """One verdict from both sources. Pod status is fresher and carries the message, so it is preferred; the
    metrics decide only when pod status is missing or sees no crash loop that kube-state-metrics does see (pods
    already replaced, a missed watch event)."""
    if from_pods is not None and (from_pods.crash_looping or from_metrics is None or not from_metrics.crash_looping):
        return from_pods
    if from_metrics is not None:
        if from_pods is not None and from_pods.termination is not None and from_pods.pod == from_metrics.pod:
            # Pod status still has that pod: its termination carries the message the metrics lack.
            return replace(from_metrics, termination=from_pods.termination)
        return from_metrics
    return CrashLoopObservation(crash_looping=False, source="PodStatus", why="no pods and no metrics")


def with_group_restarts(
    from_pods: CrashLoopObservation,
    recreations: int,
    first: datetime | None,
    last: datetime | None,
    since: datetime | None = None,
) -> CrashLoopObservation:
    """A multi-node replica (LeaderWorkerSet, RecreateGroupOnPodRestart) never shows a crash loop in pod status: a
    crash of any pod recreates the whole group, whose new pods start at restartCount 0. Each recreation (a
    RecreateGroup Event) is one crash of the replica; any recreation after ``since`` makes it a crash loop."""
    if from_pods.crash_looping or recreations <= 0 or (since is not None and last is not None and last <= since):
        return from_pods
    return replace(
        from_pods,
        crash_looping=True,
        restarts=max(from_pods.restarts, recreations),
        first_crash=first or from_pods.first_crash,
        last_crash=last or from_pods.last_crash,
        why=f"the LeaderWorkerSet recreated the group {recreations} time(s) (RecreateGroupOnPodRestart)",
    )


@dataclass(frozen=True, slots=True)
class LogSource:
    """Which container instance's log holds the words of a crash the kubelet recorded without a message."""

    pod: str
    container: str
    previous: bool


def unexplained_crash(pods: Iterable[Mapping[str, Any]], observation: CrashLoopObservation) -> LogSource | None:
    """The log to read when the classified crash has no termination message. The kubelet copies the log tail into
    the message (FallbackToLogsOnError) only for a non-zero exit, and vLLM 0.32's API server exits 0 after its
    engine died: its last words are then only in the log. ``previous``: the crash is the container's last state
    (it restarted since), not its current one."""
    termination = observation.termination
    if termination is None or termination.message.strip() or not observation.pod:
        return None
    for pod in pods:
        if (pod.get("metadata") or {}).get("name") != observation.pod:
            continue
        for state in containers_of(pod):
            if state.container == observation.container and not state.init:
                current = state.termination is not None and state.termination.finished_at == termination.finished_at
                return LogSource(state.pod, state.container, previous=not current)
    return None


def config_hash(workload: Mapping[str, Any] | None) -> str | None:
    """The config hash the serving workload's pods carry: detection reads the pods of that configuration only."""
    return workload_config_hash([workload]) if workload is not None else None
