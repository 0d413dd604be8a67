"""A LeaderWorkerSet group recreation counts as one crash of the replica."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from llama_operator.health import CrashLoopObservation
from llama_operator.health.detect import with_group_restarts

T0 = datetime(2026, 11, 23, tzinfo=UTC)
QUIET = CrashLoopObservation(crash_looping=False, source="PodStatus", restarts=1)


def test_recreations_make_a_crash_loop_that_pod_status_cannot_see():
    seen = with_group_restarts(QUIET, 3, T0, T0 + timedelta(seconds=6))
    assert seen.crash_looping
    assert seen.restarts == 3
    assert seen.first_crash == T0
    assert "recreated the group 3 time(s)" in seen.why


def test_no_recreation_or_only_before_the_last_remediation_changes_nothing():
    assert with_group_restarts(QUIET, 0, None, None) == QUIET
    assert with_group_restarts(QUIET, 2, T0, T0 + timedelta(seconds=1), since=T0 + timedelta(seconds=5)) == QUIET
    looping = CrashLoopObservation(crash_looping=True, source="PodStatus", restarts=4)
    assert with_group_restarts(looping, 2, T0, T0) == looping
