"""The remediation policy: which remedy for which crash, bounded attempts, no flapping, reset on a new spec
generation. The reconcile is simulated the way the operator applies a decision: status fields from
``status_patch()``, the effective config planned from ``effective_spec`` and ``running_config``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from llama_operator.api import API_VERSION, KIND, LastKnownGood, LlamaDeploymentSpec, LlamaDeploymentStatus
from llama_operator.health import (
    KNOWN_ISSUE_REMEDIES,
    Classification,
    CrashLoopObservation,
    Decision,
    Termination,
    decide,
    effective_spec,
    running_config,
    with_condition,
)
from llama_operator.health.causes import PodCause
from llama_operator.health.policy import crash_since, window_of
from llama_operator.health.remedies import chunk_aligned_max_model_len
from llama_operator.knowledge import load_knowledge
from llama_operator.planning import validate

KNOWLEDGE = load_knowledge()
T0 = datetime(2026, 9, 1, 12, 0, 0, tzinfo=UTC)
BLOCK_TABLE = "chunked_local_attention_block_table_overrun"
OOV = "out_of_vocab_token_ids"
BLOCK_TABLE_CRASH = Classification("cuda_device_assert_index_oob", BLOCK_TABLE, "IndexKernel.cu:111: ...")
OOV_CRASH = Classification("cuda_device_assert_embedding_oov", OOV, "Indexing.cu:1515: ...")
UNKNOWN_CRASH = Classification("unknown", None, "")


def make_spec(
    version: str = "0.8.3",
    max_model_len: int = 12000,
    patched: bool = False,
    policy: str = "Auto",
    max_attempts: int = 3,
    window: str = "1h",
) -> LlamaDeploymentSpec:
    return LlamaDeploymentSpec.model_validate(
        {
            "model": {"name": "meta-llama/Llama-4-Scout-17B-16E-Instruct"},
            "engine": {
                "vllmVersion": version,
                "maxModelLen": max_model_len,
                "tensorParallelSize": 8,
                "patched": patched,
            },
            "resources": {"gpuProduct": "NVIDIA-H100-80GB-HBM3"},
            "remediation": {"policy": policy, "maxAttempts": max_attempts, "window": window},
        }
    )


def planned(spec: LlamaDeploymentSpec, overrides: Any) -> Any:
    """What the reconcile runs: the spec with the overrides, planned, then a rollback's image and args."""
    document = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": "scout"},
        "spec": effective_spec(spec, overrides).model_dump(by_alias=True, exclude_none=True),
    }
    result = validate(document)
    assert result.effective is not None, result.findings
    return running_config(result.effective, overrides)


GOOD = LastKnownGood(
    generation=1,
    image="ghcr.io/llamaops/vllm:0.8.3-llamaops",
    args=["--model", "meta-llama/Llama-4-Scout-17B-16E-Instruct", "--max-model-len", "8192"],
    time="2026-09-01T11:00:00Z",
)


@dataclass
class Cluster:
    """The reconcile's side of the loop: status as the operator writes it."""

    spec: LlamaDeploymentSpec
    generation: int = 2
    good: LastKnownGood | None = GOOD
    now: datetime = T0
    status: LlamaDeploymentStatus = field(default_factory=LlamaDeploymentStatus)
    decisions: list[Decision] = field(default_factory=list)
    # Why the pods of the running configuration do not serve (health.causes), as the check passes it.
    waiting: PodCause | None = None

    def __post_init__(self) -> None:
        self.status = LlamaDeploymentStatus(last_known_good=self.good, effective=planned(self.spec, None))

    def observe(self, crash: Classification | None, after: float = 5.0, healthy_for: float | None = None) -> Decision:
        self.now += timedelta(seconds=after)
        if crash is not None:
            seen = CrashLoopObservation(
                crash_looping=True,
                source="PodStatus",
                termination=Termination(exit_code=1, reason="Error", message="...", finished_at=self.now),
                pod="scout-abc",
                container="vllm",
                restarts=1,
                first_crash=self.now,
                last_crash=self.now,
            )
        else:
            since = self.now - timedelta(seconds=healthy_for) if healthy_for is not None else None
            seen = CrashLoopObservation(crash_looping=False, source="PodStatus", healthy_since=since)
        decision = self.decision(seen, crash, self.now)
        self.apply(decision)
        return decision

    def decision(self, seen: CrashLoopObservation, crash: Classification | None, now: datetime) -> Decision:
        """The policy's decision on ``seen`` for this cluster's spec, generation and status (nothing applied)."""
        return decide(
            spec=self.spec,
            generation=self.generation,
            status=self.status,
            observation=seen,
            classification=crash,
            now=now,
            knowledge=KNOWLEDGE,
            waiting=self.waiting,
        )

    def apply(self, decision: Decision) -> None:
        patch = decision.status_patch()
        conditions = with_condition(
            [c.model_dump(by_alias=True, exclude_none=True) for c in self.status.conditions], decision.condition
        )
        document = {
            **self.status.model_dump(by_alias=True, exclude_none=True),
            **{k: v for k, v in patch.items() if v is not None},
            "conditions": conditions,
        }
        if patch["overrides"] is None:
            document.pop("overrides", None)
        if decision.overrides_changed:
            document["effective"] = planned(self.spec, decision.overrides).model_dump(by_alias=True)
        if decision.phase is not None:
            document["phase"] = decision.phase
        self.status = LlamaDeploymentStatus.model_validate(document)
        self.decisions.append(decision)

    def new_generation(self, spec: LlamaDeploymentSpec) -> None:
        self.spec, self.generation = spec, self.generation + 1


def test_block_table_crash_loop_walks_the_remedies_then_gives_up() -> None:
    cluster = Cluster(make_spec())
    first = cluster.observe(BLOCK_TABLE_CRASH)
    assert (first.outcome, first.action) == ("Remediated", "SwitchToPatchedImage")
    assert first.overrides is not None
    assert first.overrides.patched is True
    assert first.overrides.image == "ghcr.io/llamaops/vllm:0.8.3-llamaops"
    assert first.record is not None
    assert first.record.before == "image docker.io/vllm/vllm-openai:v0.8.3 (patched: false)"
    assert first.record.result == "Pending"
    assert first.condition.reason == "Remediating"
    assert first.phase == "CrashLooping"
    assert first.detection_seconds == 0.0
    assert [e.reason for e in first.events] == ["CrashLoopDetected", "Remediated"]
    assert cluster.status.effective is not None
    assert cluster.status.effective.image == "ghcr.io/llamaops/vllm:0.8.3-llamaops"

    second = cluster.observe(BLOCK_TABLE_CRASH)
    assert (second.outcome, second.action) == ("Remediated", "SetMaxModelLen")
    assert second.overrides is not None
    assert second.overrides.max_model_len == 16384
    assert second.overrides.patched is True  # remedies add up
    assert cluster.status.effective.max_model_len == 16384
    assert [r.result for r in cluster.status.remediations] == ["Failed", "Pending"]

    # 16384 is chunk-aligned, so the same assert now matches no known issue: roll back.
    third = cluster.observe(UNKNOWN_CRASH)
    assert (third.outcome, third.action) == ("Remediated", "Rollback")
    assert third.overrides is not None
    assert third.overrides.args == GOOD.args
    assert cluster.status.effective.image == GOOD.image
    assert cluster.status.effective.args == GOOD.args
    assert cluster.status.effective.max_model_len == 8192

    fourth = cluster.observe(UNKNOWN_CRASH)
    assert fourth.outcome == "Exhausted"
    assert fourth.phase == "Failed"
    assert (fourth.condition.status, fourth.condition.reason) == ("True", "RemediationExhausted")
    assert not fourth.overrides_changed
    assert [r.result for r in cluster.status.remediations] == ["Failed", "Failed", "Failed"]
    assert cluster.status.remediation is not None
    assert cluster.status.remediation.exhausted

    # Left alone: crashes or not, nothing changes and nothing is recorded again.
    for crash in (BLOCK_TABLE_CRASH, None, UNKNOWN_CRASH):
        again = cluster.observe(crash, after=7200, healthy_for=60)
        assert (again.outcome, again.phase, again.overrides_changed, again.events) == ("Exhausted", "Failed", False, ())
    assert len(cluster.status.remediations) == 3


def test_max_attempts_bounds_the_remedies() -> None:
    cluster = Cluster(make_spec(max_attempts=1))
    assert cluster.observe(BLOCK_TABLE_CRASH).action == "SwitchToPatchedImage"
    second = cluster.observe(BLOCK_TABLE_CRASH)
    assert second.outcome == "Exhausted"
    assert "maxAttempts 1" in second.condition.message
    assert len(cluster.status.remediations) == 1


def test_zero_attempts_means_report_and_give_up() -> None:
    decision = Cluster(make_spec(max_attempts=0)).observe(BLOCK_TABLE_CRASH)
    assert (decision.outcome, decision.overrides, decision.phase) == ("Exhausted", None, "Failed")


def test_unknown_crash_rolls_back_to_last_known_good() -> None:
    decision = Cluster(make_spec(patched=True, max_model_len=16384)).observe(UNKNOWN_CRASH)
    assert decision.action == "Rollback"
    assert decision.record is not None
    assert decision.record.after.startswith("lastKnownGood (generation 1, healthy at 2026-09-01T11:00:00Z)")


def test_no_remedy_and_no_last_known_good() -> None:
    cluster = Cluster(make_spec(patched=True, max_model_len=16384), good=None)
    first = cluster.observe(UNKNOWN_CRASH)
    assert (first.outcome, first.condition.reason, first.overrides) == ("NoRemedy", "NoRemedyAvailable", None)
    assert [e.reason for e in first.events] == ["CrashLoopDetected", "NoRemedyAvailable"]
    again = cluster.observe(UNKNOWN_CRASH)
    assert again.outcome == "NoRemedy"
    assert again.events == ()  # reported once


def test_rollback_to_the_crashing_configuration_is_no_remedy() -> None:
    spec = make_spec(patched=True, max_model_len=8192)
    running = planned(spec, None)
    good = LastKnownGood(generation=2, image=running.image, args=list(running.args))
    assert Cluster(spec, good=good).observe(UNKNOWN_CRASH).outcome == "NoRemedy"


def test_rollback_only_ignores_known_remedies() -> None:
    decision = Cluster(make_spec(policy="RollbackOnly")).observe(BLOCK_TABLE_CRASH)
    assert decision.action == "Rollback"


def test_off_reports_only() -> None:
    cluster = Cluster(make_spec(policy="Off"))
    first = cluster.observe(BLOCK_TABLE_CRASH)
    assert (first.outcome, first.overrides, first.overrides_changed, first.phase) == (
        "Reported",
        None,
        False,
        "CrashLooping",
    )
    assert [e.reason for e in first.events] == ["CrashLoopDetected"]
    assert first.condition.reason == "CrashLoopDetected"
    assert cluster.observe(BLOCK_TABLE_CRASH).events == ()
    assert cluster.status.remediations == []


def test_out_of_vocab_crash_enables_the_token_guard() -> None:
    decision = Cluster(make_spec(version="0.32.0", max_model_len=16384)).observe(OOV_CRASH)
    assert decision.action == "EnableTokenGuard"
    assert decision.overrides is not None
    assert decision.overrides.image == "ghcr.io/llamaops/vllm:0.32.0-llamaops"
    assert decision.record is not None
    assert "token guard" in decision.record.after


def test_token_guard_already_on_rolls_back() -> None:
    assert Cluster(make_spec(version="0.32.0", patched=True)).observe(OOV_CRASH).action == "Rollback"


def test_token_guard_needs_a_version_it_exists_for() -> None:
    # The guard ships for vLLM >= 0.32.0 only: on 0.8.3 an out-of-vocabulary crash gets a rollback.
    assert Cluster(make_spec(max_model_len=16384)).observe(OOV_CRASH).action == "Rollback"


def test_crash_from_before_the_last_change_is_waited_out() -> None:
    cluster = Cluster(make_spec())
    cluster.observe(BLOCK_TABLE_CRASH)
    acted = crash_since(cluster.status, cluster.generation)
    assert acted == cluster.now
    old = CrashLoopObservation(crash_looping=True, source="PodStatus", last_crash=acted - timedelta(seconds=1))
    decision = cluster.decision(old, BLOCK_TABLE_CRASH, cluster.now + timedelta(seconds=5))
    assert (decision.outcome, decision.overrides_changed, decision.record) == ("Waiting", False, None)


def test_recovery_needs_the_pods_healthy_for_a_while() -> None:
    cluster = Cluster(make_spec())
    cluster.observe(BLOCK_TABLE_CRASH)
    waiting = cluster.observe(None, after=8, healthy_for=5)
    assert (waiting.outcome, waiting.condition.status) == ("Waiting", "True")
    recovered = cluster.observe(None, after=10, healthy_for=15)
    assert recovered.outcome == "Recovered"
    assert (recovered.condition.status, recovered.condition.reason) == ("False", "Recovered")
    assert recovered.recovery_seconds == 18.0
    assert [e.reason for e in recovered.events] == ["Recovered"]
    assert [r.result for r in cluster.status.remediations] == ["Recovered"]
    # The remedy stays in effect: recovering does not undo it.
    assert recovered.overrides is not None
    assert recovered.overrides.patched is True
    assert not recovered.overrides_changed
    assert cluster.observe(None, healthy_for=60).outcome == "Healthy"


def test_a_remediation_whose_pods_cannot_be_scheduled_says_it_waits_for_capacity() -> None:
    cluster = Cluster(make_spec())
    cluster.observe(BLOCK_TABLE_CRASH)
    said = "0/3 nodes are available: 1 Insufficient nvidia.com/gpu, 2 node(s) didn't match Pod's node affinity."
    cluster.waiting = PodCause("Unschedulable", f"pod scout-def: {said}", "scout-def", said)
    waiting = cluster.observe(None, after=3)
    assert (waiting.outcome, waiting.phase, waiting.overrides_changed) == ("Waiting", None, False)
    assert (waiting.condition.status, waiting.condition.reason) == ("True", "RemediationWaitingForCapacity")
    assert said in waiting.condition.message
    assert waiting.condition.message.startswith("SwitchToPatchedImage is applied after cuda_device_assert_index_oob")
    assert [(e.type, e.reason) for e in waiting.events] == [("Warning", "RemediationWaitingForCapacity")]
    assert [r.result for r in cluster.status.remediations] == ["Pending"]
    # Still waiting: no second Event. The image next: another reason, another Event.
    assert cluster.observe(None, after=3).events == ()
    cluster.waiting = PodCause("ImagePullFailed", "container vllm of pod scout-def: ErrImagePull: not found")
    pulling = cluster.observe(None, after=3)
    assert pulling.condition.reason == "RemediationWaitingForImage"
    assert [e.reason for e in pulling.events] == ["RemediationWaitingForImage"]
    cluster.waiting = PodCause("ContainerCreateFailed", "container vllm of pod scout-def: CreateContainerError")
    assert cluster.observe(None, after=3).condition.reason == "RemediationWaitingForPods"
    # Merely starting is no wait of its own; then the pods serve and the loop is over.
    cluster.waiting = PodCause("Starting", "container vllm of pod scout-def is starting (not ready yet)")
    assert cluster.observe(None, after=3).condition.reason == "Remediating"
    cluster.waiting = None
    assert cluster.observe(None, after=20, healthy_for=15).outcome == "Recovered"


def test_a_crash_loop_without_a_remediation_does_not_wait_for_capacity() -> None:
    cluster = Cluster(make_spec(policy="Off"))
    cluster.observe(BLOCK_TABLE_CRASH)
    cluster.waiting = PodCause("Unschedulable", "pod scout-def: 0/3 nodes are available")
    assert cluster.observe(None, after=3).condition.reason == "CrashLoopDetected"


def test_pods_healthy_since_before_the_last_change_are_not_a_recovery() -> None:
    cluster = Cluster(make_spec())
    cluster.observe(BLOCK_TABLE_CRASH)
    assert cluster.observe(None, after=30, healthy_for=40).outcome == "Waiting"


def test_new_generation_resets() -> None:
    cluster = Cluster(make_spec(max_attempts=1))
    cluster.observe(BLOCK_TABLE_CRASH)
    assert cluster.observe(BLOCK_TABLE_CRASH).outcome == "Exhausted"
    cluster.new_generation(make_spec(max_attempts=1, max_model_len=11000))
    calm = cluster.observe(None)
    assert calm.outcome == "Healthy"
    assert calm.overrides is None
    assert calm.overrides_changed  # the old generation's overrides must be rendered away
    assert cluster.status.remediation is not None
    assert (cluster.status.remediation.generation, cluster.status.remediation.exhausted) == (3, False)
    again = cluster.observe(BLOCK_TABLE_CRASH)
    assert again.action == "SwitchToPatchedImage"
    assert [r.generation for r in cluster.status.remediations] == [2, 3]


def test_pending_remediation_of_an_old_generation_is_superseded() -> None:
    cluster = Cluster(make_spec())
    cluster.observe(BLOCK_TABLE_CRASH)
    cluster.new_generation(make_spec(max_model_len=16384, patched=True))
    cluster.observe(None)
    assert [r.result for r in cluster.status.remediations] == ["Superseded"]


def test_chunk_aligned_max_model_len() -> None:
    assert chunk_aligned_max_model_len(make_spec(max_model_len=12000), KNOWLEDGE) == (12000, 16384, 1436784)
    assert chunk_aligned_max_model_len(make_spec(max_model_len=16384), KNOWLEDGE) is None
    # Below one chunk: up to the first multiple.
    assert chunk_aligned_max_model_len(make_spec(max_model_len=4096), KNOWLEDGE) == (4096, 8192, 1436784)
    # Past what fits: down to the largest multiple that does.
    current, target, fits = chunk_aligned_max_model_len(make_spec(max_model_len=1436785), KNOWLEDGE) or (0, 0, 0)
    assert target == fits // 8192 * 8192 < current


def test_known_issue_remedies_name_registry_issues() -> None:
    ids = {issue.id for issue in KNOWLEDGE.issues}
    assert set(KNOWN_ISSUE_REMEDIES) <= ids


def test_window_of() -> None:
    assert window_of("45s") == timedelta(seconds=45)
    assert window_of("30m") == timedelta(minutes=30)
    assert window_of("2h") == timedelta(hours=2)
    with pytest.raises(ValueError, match="window"):
        window_of("1d")


def test_effective_spec_never_changes_the_users_spec() -> None:
    spec = make_spec()
    decision = Cluster(spec).observe(BLOCK_TABLE_CRASH)
    changed = effective_spec(spec, decision.overrides)
    assert changed.engine.patched is True
    assert spec.engine.patched is False
    assert effective_spec(spec, None) is spec


# --- properties over arbitrary histories ---

steps = st.lists(
    st.tuples(
        # Crashes weigh most: a history must get far enough to use up remedies and attempts.
        st.sampled_from(["block_table", "unknown", "block_table", "oov", "unknown", "healthy", "quiet"]),
        st.sampled_from([5, 1, 20, 61, 400, 3700]),
    ),
    min_size=3,
    max_size=25,
)
CRASHES = {"block_table": BLOCK_TABLE_CRASH, "oov": OOV_CRASH, "unknown": UNKNOWN_CRASH}


@settings(max_examples=300, deadline=None)
@given(
    history=steps,
    policy=st.sampled_from(["Auto", "RollbackOnly", "Auto", "Off"]),
    max_attempts=st.sampled_from([2, 1, 3, 0, 4]),
    window=st.sampled_from(["30s", "5m", "1h"]),
    version=st.sampled_from(["0.8.3", "0.32.0"]),
    patched=st.booleans(),
    with_good=st.sampled_from([True, False]),
)
def test_bounded_and_never_flapping(
    history: list[tuple[str, int]],
    policy: str,
    max_attempts: int,
    window: str,
    version: str,
    patched: bool,
    with_good: bool,
) -> None:
    spec = make_spec(version=version, patched=patched, policy=policy, max_attempts=max_attempts, window=window)
    cluster = Cluster(spec, good=GOOD if with_good else None)
    seen_overrides: list[Any] = [None]
    exhausted = False
    for kind, after in history:
        decision = cluster.observe(CRASHES.get(kind), after=after, healthy_for=after if kind == "healthy" else None)
        if exhausted:
            # Exhausted stays exhausted: no change, no record, no event.
            assert (decision.outcome, decision.overrides_changed, decision.record, decision.events) == (
                "Exhausted",
                False,
                None,
                (),
            )
        exhausted = exhausted or decision.outcome == "Exhausted"
        assert (decision.phase == "Failed") == (decision.outcome == "Exhausted")
        if decision.overrides_changed:
            # Overrides only move forward: never back to a value they had.
            assert decision.overrides not in seen_overrides
            seen_overrides.append(decision.overrides)
        if policy == "Off":
            assert decision.record is None
    records = cluster.status.remediations
    event(f"{len(records)} remediation(s), exhausted: {exhausted}")
    span = window_of(window)
    times = [datetime.fromisoformat(r.time) for r in records]
    for moment in times:
        assert sum(1 for other in times if moment - span < other <= moment) <= max_attempts
    assert len({r.action for r in records}) == len(records)  # each remedy at most once per generation


def test_the_window_slides() -> None:
    # One attempt per 30 s: crashes a minute apart each get the next remedy, until none is left.
    cluster = Cluster(make_spec(max_attempts=1, window="30s"))
    actions = [cluster.observe(BLOCK_TABLE_CRASH, after=61).action for _ in range(2)]
    actions.append(cluster.observe(UNKNOWN_CRASH, after=61).action)
    assert actions == ["SwitchToPatchedImage", "SetMaxModelLen", "Rollback"]
    last = cluster.observe(UNKNOWN_CRASH, after=61)
    assert last.outcome == "Exhausted"
    assert "no remedy left after 3 remediation(s)" in last.condition.message
