"""Crash-loop remediation policy: one observation in, one decision out (pure).

Rules, per spec generation (a new generation -- the user's next spec change -- starts afresh: overrides dropped,
attempts counted from zero):

* Off reports only. RollbackOnly returns to ``lastKnownGood``. Auto applies the matched known issue's remedies in
  order (remedies.KNOWN_ISSUE_REMEDIES), skipping those already in effect, then rolls back.
* Bounded: at most ``maxAttempts`` remediations within ``window``. When they are used up, or no remedy is left
  after at least one, the generation is exhausted: phase Failed, CrashLooping=True with reason
  RemediationExhausted, and no further change until the spec changes.
* Never flaps: overrides only move forward (each remedy adds to them, a rollback replaces them, nothing undoes
  them within a generation); a crash that ended before the last remediation says nothing about it (``since``);
  recovery needs the pods healthy for ``stable_s`` after the last change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from llama_operator.api import Condition, LlamaDeploymentSpec, LlamaDeploymentStatus, Remediation
from llama_operator.api.rollout import seconds_of
from llama_operator.api.status import CrashLoop, Phase, RemediationOverrides, RemediationState
from llama_operator.health.causes import IMAGE_PULL_FAILED, UNSCHEDULABLE, PodCause
from llama_operator.health.classify import Classification
from llama_operator.health.detect import CrashLoopObservation, parse_time
from llama_operator.health.remedies import Action, Change, choose, effective_spec
from llama_operator.knowledge import Knowledge, load_knowledge

CONDITION = "CrashLooping"
# History kept in status; maxAttempts is at most 100, so every attempt that counts is always kept.
MAX_HISTORY = 100
DEFAULT_STABLE_S = 10.0
# What a remediation's new pods wait for, by the cause that keeps them from serving (health.causes); any other
# failure is RemediationWaitingForPods.
WAITING_FOR = {UNSCHEDULABLE: "RemediationWaitingForCapacity", IMAGE_PULL_FAILED: "RemediationWaitingForImage"}
WAITING_FOR_PODS = "RemediationWaitingForPods"

Outcome = Literal["Healthy", "Reported", "Remediated", "Waiting", "NoRemedy", "Exhausted", "Recovered"]


@dataclass(frozen=True, slots=True)
class Event:
    """A Kubernetes Event to record on the LlamaDeployment."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do now. Apply by writing ``status_patch()`` (and ``condition``, ``phase`` when set), re-rendering
    with ``overrides`` when ``overrides_changed``, and recording ``events``."""

    outcome: Outcome
    action: Action | None
    overrides: RemediationOverrides | None
    overrides_changed: bool
    remediations: tuple[Remediation, ...]
    state: RemediationState
    condition: Condition
    phase: Phase | None
    events: tuple[Event, ...] = ()
    # For the metrics: seconds from the first crash to its detection / to recovery, when they happen now.
    detection_seconds: float | None = None
    recovery_seconds: float | None = None
    record: Remediation | None = field(default=None)

    def status_patch(self) -> dict[str, Any]:
        """The status fields remediation owns, camelCase as the CRD stores them (a merge patch)."""
        patch: dict[str, Any] = {
            "remediations": [r.model_dump(by_alias=True, exclude_none=True) for r in self.remediations],
            "overrides": self.overrides.model_dump(by_alias=True, exclude_none=True) if self.overrides else None,
            "remediation": self.state.model_dump(by_alias=True, exclude_none=True),
        }
        return patch


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def window_of(text: str) -> timedelta:
    """spec.remediation.window ("30m", "1h", "45s") as a duration; the CRD's pattern guarantees the form."""
    try:
        return timedelta(seconds=seconds_of(text))
    except ValueError:
        raise ValueError(f"window must be <number>s|m|h, got {text!r}") from None


def current_state(status: LlamaDeploymentStatus, generation: int) -> RemediationState:
    """The remediation state for this generation (a fresh one when the spec changed)."""
    state = status.remediation
    if state is not None and state.generation == generation:
        return state
    return RemediationState(generation=generation)


def current_overrides(status: LlamaDeploymentStatus, generation: int) -> RemediationOverrides | None:
    """The overrides in force for this generation (none once the spec changed)."""
    overrides = status.overrides
    return overrides if overrides is not None and overrides.generation == generation else None


def crash_since(status: LlamaDeploymentStatus, generation: int) -> datetime | None:
    """Crashes that ended at or before this moment belong to a configuration remediation already replaced: pass it
    as ``since`` to detection."""
    return parse_time(current_state(status, generation).last_action_time)


def watched_config(status: LlamaDeploymentStatus, generation: int) -> str | None:
    """The configuration hash the crash-loop watch looks at while a progressive rollout of ``generation`` moves: the
    previous configuration's (the stable replicas); the rollout judges the new configuration's pods itself. None:
    the serving workload's own."""
    rollout = status.rollout
    if rollout is not None and rollout.generation == generation and rollout.phase in ("Canary", "Promoting"):
        return rollout.old_config_hash or None
    return None


def attempts_in_window(
    remediations: Sequence[Remediation], generation: int, window: timedelta, now: datetime
) -> list[Remediation]:
    """This generation's remediations made within the window before ``now``."""
    recent = []
    for record in remediations:
        moment = parse_time(record.time)
        if record.generation == generation and moment is not None and now - moment < window:
            recent.append(record)
    return recent


def _condition(
    status: LlamaDeploymentStatus, generation: int, value: bool, reason: str, message: str, now: datetime
) -> Condition:
    text: Literal["True", "False"] = "True" if value else "False"
    previous = next((c for c in status.conditions if c.type == CONDITION), None)
    since = previous.last_transition_time if previous is not None and previous.status == text else None
    return Condition(
        type=CONDITION,
        status=text,
        reason=reason,
        message=message[:4000],
        last_transition_time=since or rfc3339(now),
        observed_generation=generation,
    )


def _settle(records: Sequence[Remediation], result: Literal["Recovered", "Failed", "Superseded"]) -> list[Remediation]:
    """Close the pending remediation(s) with a result."""
    return [r.model_copy(update={"result": result}) if r.result == "Pending" else r for r in records]


def _seconds(later: datetime, earlier: datetime | None) -> float | None:
    return max(0.0, (later - earlier).total_seconds()) if earlier is not None else None


@dataclass(frozen=True, slots=True)
class _Context:
    """What every branch of ``decide`` builds its decision from."""

    status: LlamaDeploymentStatus
    generation: int
    now: datetime
    state: RemediationState
    history: tuple[Remediation, ...]
    overrides: RemediationOverrides | None
    # Overrides of an older generation were dropped: the reconcile must re-render without them.
    dropped: bool

    def decision(
        self,
        outcome: Outcome,
        value: bool,
        reason: str,
        message: str,
        phase: Phase | None,
        *,
        state: RemediationState | None = None,
        history: Sequence[Remediation] | None = None,
        change: Change | None = None,
        record: Remediation | None = None,
        events: tuple[Event, ...] = (),
        detection: float | None = None,
        recovery: float | None = None,
    ) -> Decision:
        kept = tuple(self.history if history is None else history)
        return Decision(
            outcome=outcome,
            action=change.action if change is not None else None,
            overrides=change.overrides if change is not None else self.overrides,
            overrides_changed=change is not None or self.dropped,
            remediations=kept[-MAX_HISTORY:],
            state=self.state if state is None else state,
            condition=_condition(self.status, self.generation, value, reason, message, self.now),
            phase=phase,
            events=events,
            detection_seconds=detection,
            recovery_seconds=recovery,
            record=record,
        )


def decide(
    *,
    spec: LlamaDeploymentSpec,
    generation: int,
    status: LlamaDeploymentStatus,
    observation: CrashLoopObservation,
    classification: Classification | None,
    now: datetime,
    knowledge: Knowledge | None = None,
    stable_s: float = DEFAULT_STABLE_S,
    waiting: PodCause | None = None,
) -> Decision:
    """The remediation decision for one look at a deployment. ``spec`` is the user's spec (never modified),
    ``status`` the current status, ``classification`` that of ``observation.termination`` (None: unknown),
    ``waiting`` why the pods of the running configuration do not serve (health.causes), if they do not."""
    knowledge = knowledge or load_knowledge()
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    history = tuple(status.remediations)
    if status.remediation is not None and status.remediation.generation != generation:
        history = tuple(_settle(history, "Superseded"))
    attempts = attempts_in_window(history, generation, window_of(spec.remediation.window), now)
    overrides = current_overrides(status, generation)
    ctx = _Context(
        status=status,
        generation=generation,
        now=now,
        state=current_state(status, generation).model_copy(update={"attempts": len(attempts)}),
        history=history,
        overrides=overrides,
        dropped=status.overrides is not None and overrides is None,
    )
    if ctx.state.exhausted:
        message = f"remediation exhausted for generation {generation}; change the spec to try again"
        if ctx.state.crash_loop is not None:
            message += f" (last crash: {ctx.state.crash_loop.signature})"
        return ctx.decision("Exhausted", True, "RemediationExhausted", message, "Failed")
    if not observation.crash_looping:
        return _not_looping(ctx, observation, stable_s, waiting)
    last_action = parse_time(ctx.state.last_action_time)
    if last_action is not None and observation.last_crash is not None and observation.last_crash <= last_action:
        # The crash seen ended before the last change: it is the replaced configuration's.
        return ctx.decision(
            "Waiting",
            True,
            "Remediating",
            "waiting for the pods of the remediated configuration (the crash seen ended before the last change)",
            None,
        )
    return _looping(ctx, spec, observation, classification, len(attempts), knowledge)


def _not_looping(
    ctx: _Context, observation: CrashLoopObservation, stable_s: float, waiting: PodCause | None
) -> Decision:
    loop = ctx.state.crash_loop
    if loop is None:
        return ctx.decision("Healthy", False, "NoCrashLoop", "no container is crash-looping", None)
    healthy = observation.healthy_since
    last_action = parse_time(ctx.state.last_action_time)
    settled = (
        healthy is not None
        and (ctx.now - healthy).total_seconds() >= stable_s
        # Timestamps have whole seconds: a pod of the new configuration may start in the second of the change.
        and (last_action is None or healthy >= last_action)
    )
    if not settled and last_action is not None and waiting is not None and waiting.failure:
        return _waiting_for(ctx, loop, waiting)
    if not settled:
        return ctx.decision(
            "Waiting",
            True,
            "Remediating" if last_action is not None else "CrashLoopDetected",
            f"waiting for the pods to run healthy for {stable_s:g}s (last crash: {loop.signature})",
            None,
        )
    message = f"the pods run healthy again after {loop.signature}"
    if ctx.overrides is not None:
        message += f", with remediation {ctx.overrides.action} in effect"
    return ctx.decision(
        "Recovered",
        False,
        "Recovered",
        message,
        None,
        state=ctx.state.model_copy(update={"crash_loop": None}),
        history=_settle(ctx.history, "Recovered"),
        events=(Event("Normal", "Recovered", message),),
        recovery=_seconds(ctx.now, parse_time(loop.first_crash_time)),
    )


def _waiting_for(ctx: _Context, loop: CrashLoop, waiting: PodCause) -> Decision:
    """A remediation was made and its pods cannot serve yet for a reason of their own (no node has the GPUs free,
    the image cannot be pulled): say what it waits for, with the scheduler's or the kubelet's words, and post an
    Event when it starts waiting for something else."""
    reason = WAITING_FOR.get(waiting.reason, WAITING_FOR_PODS)
    action = ctx.overrides.action if ctx.overrides is not None else "the remediation"
    message = f"{action} is applied after {loop.signature}; its pods wait ({waiting.reason}): {waiting.message}"
    message = message[:4000]
    previous = next((c for c in ctx.status.conditions if c.type == CONDITION), None)
    changed = previous is None or previous.reason != reason
    events = (Event("Warning", reason, message[:1000]),) if changed else ()
    return ctx.decision("Waiting", True, reason, message, None, events=events)


def _crash_loop(ctx: _Context, observation: CrashLoopObservation, classification: Classification | None) -> CrashLoop:
    termination = observation.termination
    previous = ctx.state.crash_loop
    first = observation.first_crash or (termination.finished_at if termination else None) or ctx.now
    earlier = parse_time(previous.first_crash_time) if previous is not None else None
    return CrashLoop(
        source=observation.source,
        signature=classification.signature if classification is not None else "unknown",
        known_issue=classification.known_issue if classification is not None else None,
        detail=(classification.detail if classification is not None else "")[:1000],
        pod=observation.pod[:253],
        container=observation.container[:253],
        exit_code=termination.exit_code if termination else None,
        restarts=observation.restarts,
        first_crash_time=rfc3339(min(first, earlier) if earlier is not None else first),
        detected_time=previous.detected_time if previous is not None else rfc3339(ctx.now),
    )


def _looping(
    ctx: _Context,
    spec: LlamaDeploymentSpec,
    observation: CrashLoopObservation,
    classification: Classification | None,
    attempts: int,
    knowledge: Knowledge,
) -> Decision:
    loop = _crash_loop(ctx, observation, classification)
    newly = ctx.state.crash_loop is None
    detection = _seconds(ctx.now, parse_time(loop.first_crash_time)) if newly else None
    state = ctx.state.model_copy(update={"crash_loop": loop})
    seen = loop.signature + (f" ({loop.known_issue})" if loop.known_issue else "")
    seen += f" in pod {loop.pod} (from {loop.source})"
    found = (Event("Warning", "CrashLoopDetected", f"crash loop: {seen}: {loop.detail}"[:1000]),) if newly else ()
    policy = spec.remediation.policy
    if policy == "Off":
        message = f"crash loop: {seen}; spec.remediation.policy is Off: nothing is changed"
        return ctx.decision(
            "Reported", True, "CrashLoopDetected", message, "CrashLooping", state=state, events=found,
            detection=detection,
        )  # fmt: skip
    made = sum(1 for r in ctx.history if r.generation == ctx.generation)
    if attempts >= spec.remediation.max_attempts:
        why = (
            f"{attempts} remediation(s) within {spec.remediation.window} (maxAttempts "
            f"{spec.remediation.max_attempts}) did not stop the crash loop: {seen}"
        )
        return _exhaust(ctx, state, why, found, detection)
    change = choose(
        policy=policy,
        known_issue=loop.known_issue,
        spec=effective_spec(spec, ctx.overrides),
        overrides=ctx.overrides or RemediationOverrides(generation=ctx.generation, action=""),
        good=ctx.status.last_known_good,
        running=ctx.status.effective,
        knowledge=knowledge,
    )
    if change is None:
        if made > 0:
            return _exhaust(ctx, state, f"no remedy left after {made} remediation(s): {seen}", found, detection)
        why = "no lastKnownGood to roll back to"
        if policy == "Auto":
            why = "no known remedy applies and " + why
        message = f"crash loop: {seen}; {why}: nothing is changed"
        events = (*found, Event("Warning", "NoRemedyAvailable", message[:1000])) if newly else ()
        return ctx.decision(
            "NoRemedy", True, "NoRemedyAvailable", message, "CrashLooping", state=state, events=events,
            detection=detection,
        )  # fmt: skip
    record = Remediation(
        time=rfc3339(ctx.now),
        signature=loop.signature,
        known_issue=loop.known_issue,
        action=change.action,
        before=change.before[:4096],
        after=change.after[:4096],
        generation=ctx.generation,
        result="Pending",
    )
    message = f"{change.action} after crash loop {seen}: {change.before} -> {change.after}"
    return ctx.decision(
        "Remediated",
        True,
        "Remediating",
        message,
        "CrashLooping",
        state=state.model_copy(update={"attempts": attempts + 1, "last_action_time": record.time}),
        history=[*_settle(ctx.history, "Failed"), record],
        change=change,
        record=record,
        events=(*found, Event("Warning", "Remediated", message[:1000])),
        detection=detection,
    )


def _exhaust(
    ctx: _Context, state: RemediationState, why: str, found: tuple[Event, ...], detection: float | None
) -> Decision:
    message = why + "; no further changes until the spec changes"
    return ctx.decision(
        "Exhausted",
        True,
        "RemediationExhausted",
        message,
        "Failed",
        state=state.model_copy(update={"exhausted": True}),
        history=_settle(ctx.history, "Failed"),
        events=(*found, Event("Warning", "RemediationExhausted", message[:1000])),
        detection=detection,
    )


def with_condition(conditions: Sequence[Mapping[str, Any]], condition: Condition) -> list[dict[str, Any]]:
    """A conditions list (camelCase dicts, as in the status) with ``condition`` put in place of its type."""
    replaced = [dict(c) for c in conditions if c.get("type") != condition.type]
    return [*replaced, condition.model_dump(by_alias=True, exclude_none=True)]
