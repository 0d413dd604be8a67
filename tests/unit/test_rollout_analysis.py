"""The canary's metric analysis (issue #22): health.regression judges vLLM's error and latency metrics of the canary
pods against the stable pods from Prometheus answers shaped as Prometheus sends them (the series names, labels and
bucket bounds are vLLM 0.32's, as scraped from the tiny Llama-4 on the CPU build); desired.analysis says what to ask;
a regression halts the rollout with reason MetricRegression."""

from __future__ import annotations

import math
from typing import Any

import pytest

from llama_operator.api.rollout import AnalysisSpec
from llama_operator.desired import analysis as asking
from llama_operator.desired import desired_state
from llama_operator.desired import rollout as progressive
from llama_operator.handlers import analysis
from llama_operator.handlers.metrics import ROLLOUTS, observe_rollout
from llama_operator.health.promql import parse_response
from llama_operator.health.regression import (
    SERIES_LABEL,
    Thresholds,
    Track,
    Verdict,
    analysis_query,
    batch_query,
    judge,
    quantile,
    track_of,
)
from tests.unit.test_rollout import INPUTS, REPLICAS, T0, _hash, _live, _llama, _look, _pod, _stable_of, _t

NAMESPACE = "ai"
CANARY, STABLE = ("llama31-8b-canary-7d9f-x2x4q",), ("llama31-8b-5c6b-abcde", "llama31-8b-5c6b-fghij")
# vLLM 0.32's time_to_first_token_seconds and e2e_request_latency_seconds bucket bounds.
TTFT_BOUNDS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, math.inf)
E2E_BOUNDS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, math.inf)


def _le(bound: float) -> str:
    return "+Inf" if bound == math.inf else repr(bound)


def _series(pod: str, tag: str, value: float, **labels: str) -> dict[str, Any]:
    metric = {"namespace": NAMESPACE, "pod": pod, SERIES_LABEL: tag, **labels}
    return {"metric": metric, "value": [1796319600.123, repr(float(value))]}


def _histogram(pod: str, tag: str, bounds: tuple[float, ...], latencies: list[float]) -> list[dict[str, Any]]:
    return [_series(pod, tag, sum(1 for x in latencies if x <= b), le=_le(b)) for b in bounds]


def _pod_answer(pod: str, ok: int, rejected: int = 0, aborted: int = 0, ttft: float = 0.015, e2e: float = 0.2):
    """What analysis_query's answer holds for one pod: ``ok`` requests served in ``ttft``/``e2e`` seconds each (a
    tenth of them 3x slower), ``rejected`` answered 4xx before the engine, ``aborted`` by the engine."""
    served = ok + aborted
    slow = served // 10
    return [
        _series(pod, "requests", ok, status="2xx"),
        *([_series(pod, "requests", rejected, status="4xx")] if rejected else []),
        _series(pod, "finished", ok, finished_reason="length"),
        _series(pod, "finished", 0, finished_reason="stop"),
        _series(pod, "finished", aborted, finished_reason="abort"),
        _series(pod, "finished", 0, finished_reason="error"),
        *_histogram(pod, "ttft", TTFT_BOUNDS, [ttft] * (served - slow) + [3 * ttft] * slow),
        *_histogram(pod, "e2e", E2E_BOUNDS, [e2e] * (served - slow) + [3 * e2e] * slow),
    ]


def _answer(*pods: list[dict[str, Any]]) -> Any:
    body = {"status": "success", "data": {"resultType": "vector", "result": [s for pod in pods for s in pod]}}
    return parse_response(body).samples


def _judged(samples: Any, thresholds: Thresholds | None = None) -> Verdict:
    return judge(track_of(samples, CANARY), track_of(samples, STABLE), thresholds or Thresholds())


def test_a_canary_that_rejects_what_the_stable_pods_serve_fails_on_its_error_rate() -> None:
    samples = _answer(
        _pod_answer(CANARY[0], ok=40, rejected=40),
        _pod_answer(STABLE[0], ok=60),
        _pod_answer(STABLE[1], ok=59, rejected=1),
    )
    verdict = _judged(samples)
    assert verdict.outcome == "Fail"
    assert verdict.metric == "error rate"
    # The metric, the canary's value, the stable baseline and the threshold, with the counts behind them.
    assert "canary 50.00% (4xx/5xx answers: 40 of 80)" in verdict.message
    assert "stable 0.83% (1 of 120)" in verdict.message
    assert "threshold 1.83% (stable + 1 percentage points)" in verdict.message


def test_a_healthy_canary_passes_with_its_figures() -> None:
    samples = _answer(_pod_answer(CANARY[0], ok=80), _pod_answer(STABLE[0], ok=70), _pod_answer(STABLE[1], ok=75))
    verdict = _judged(samples)
    assert verdict.outcome == "Pass", verdict.message
    assert "80 canary and 145 stable requests" in verdict.message
    assert "error rate 0.00% vs 0.00%" in verdict.message
    assert "p90 time to first token" in verdict.message
    assert "p90 end-to-end latency" in verdict.message


def test_a_slower_canary_fails_on_its_p90_time_to_first_token() -> None:
    samples = _answer(_pod_answer(CANARY[0], ok=80, ttft=0.4), _pod_answer(STABLE[0], ok=80, ttft=0.03))
    verdict = _judged(samples)
    assert verdict.outcome == "Fail"
    assert verdict.metric == "p90 time to first token"
    canary_p90 = quantile(0.9, track_of(samples, CANARY).ttft)
    stable_p90 = quantile(0.9, track_of(samples, STABLE).ttft)
    assert canary_p90 is not None
    assert stable_p90 is not None
    assert f"canary {canary_p90:.3f} s, stable {stable_p90:.3f} s" in verdict.message
    assert "1.5 x stable" in verdict.message
    # A looser ratio lets it through on latency.
    loose = _judged(samples, Thresholds(max_latency_ratio=20))
    assert loose.outcome == "Pass", loose.message


def test_end_to_end_latency_is_judged_too() -> None:
    samples = _answer(_pod_answer(CANARY[0], ok=80, e2e=2.0), _pod_answer(STABLE[0], ok=80, e2e=0.4))
    verdict = _judged(samples)
    assert (verdict.outcome, verdict.metric) == ("Fail", "p90 end-to-end latency")


def test_latencies_a_few_milliseconds_apart_are_noise_not_a_regression() -> None:
    # 2x the stable p90, but only a few ms: the buckets and the scheduler decide at that scale.
    samples = _answer(_pod_answer(CANARY[0], ok=80, ttft=0.018), _pod_answer(STABLE[0], ok=80, ttft=0.009))
    assert _judged(samples).outcome == "Pass"


@pytest.mark.parametrize(("canary_ok", "stable_ok"), [(10, 500), (500, 10), (0, 10)])
def test_too_little_traffic_is_inconclusive_never_a_failure(canary_ok: int, stable_ok: int) -> None:
    # Every canary request failed, but too few were seen on one side to judge.
    samples = _answer(
        _pod_answer(CANARY[0], ok=0, rejected=canary_ok), _pod_answer(STABLE[0], ok=stable_ok, ttft=0.001)
    )
    verdict = _judged(samples)
    assert verdict.outcome == "Inconclusive"
    assert "too little traffic" in verdict.message
    assert f"the canary served {canary_ok} and the stable replicas {stable_ok} requests" in verdict.message
    assert "50 each are needed" in verdict.message


def test_no_answer_at_all_is_inconclusive_and_says_what_may_be_missing() -> None:
    verdict = _judged(_answer())
    assert verdict.outcome == "Inconclusive"
    assert "no traffic, or Prometheus does not scrape the pods' vLLM metrics" in verdict.message


def test_without_the_http_counter_the_engines_aborts_decide() -> None:
    # vLLM 0.8.x exports http_requests_total only with PROMETHEUS_MULTIPROC_DIR: the engine's counter remains.
    def engine_only(pod: str, ok: int, aborted: int) -> list[dict[str, Any]]:
        return [s for s in _pod_answer(pod, ok=ok, aborted=aborted) if s["metric"][SERIES_LABEL] != "requests"]

    samples = _answer(engine_only(CANARY[0], ok=60, aborted=20), engine_only(STABLE[0], ok=80, aborted=0))
    verdict = _judged(samples)
    assert (verdict.outcome, verdict.metric) == ("Fail", "engine failure rate")
    assert "canary 25.00% (aborted or failed requests: 20 of 80)" in verdict.message


def test_pods_of_neither_track_are_left_out() -> None:
    samples = _answer(_pod_answer(CANARY[0], ok=80), _pod_answer("someone-else", ok=0, rejected=500))
    assert track_of(samples, CANARY).failed == 0
    assert track_of(samples, STABLE) == Track()


def test_quantile_interpolates_as_histogram_quantile() -> None:
    # Scraped from vLLM: 13 first tokens under 20 ms, 7 more under 40 ms, 1 under 80 ms.
    buckets = ((0.01, 0.0), (0.02, 13.0), (0.04, 20.0), (0.08, 21.0), (math.inf, 21.0))
    assert quantile(0.9, buckets) == pytest.approx(0.02 + 0.02 * (18.9 - 13) / 7)
    assert quantile(0.5, buckets) == pytest.approx(0.01 + 0.01 * 10.5 / 13)
    # The rank falls in +Inf: the highest finite bound, as Prometheus answers.
    assert quantile(0.99, ((0.1, 5.0), (math.inf, 10.0))) == 0.1
    assert quantile(0.9, ((0.1, 0.0), (math.inf, 0.0))) is None
    assert quantile(0.9, ()) is None


def test_increase_extrapolated_buckets_are_kept_cumulative() -> None:
    # increase() extrapolates each bucket on its own, so a lower bucket can exceed a higher one by a little.
    samples = _answer(
        [
            _series(CANARY[0], "ttft", 10.4, le="0.02"),
            _series(CANARY[0], "ttft", 10.1, le="0.04"),
            _series(CANARY[0], "ttft", 10.2, le="+Inf"),
        ]
    )
    assert track_of(samples, CANARY).ttft == ((0.02, 10.4), (0.04, 10.4), (math.inf, 10.4))


def test_the_query_asks_once_for_every_series_of_both_tracks() -> None:
    query = analysis_query(NAMESPACE, CANARY + STABLE, 300)
    assert query.count("[300s]") == 4
    assert query.count(f'namespace="{NAMESPACE}"') == 4
    for name in (
        "http_requests_total",
        "vllm:request_success_total",
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:e2e_request_latency_seconds_bucket",
    ):
        assert name in query
    assert 'handler=~"/v1/.+"' in query
    assert 'pod=~"llama31-8b-5c6b-abcde|llama31-8b-5c6b-fghij|llama31-8b-canary-7d9f-x2x4q"' in query


def test_thresholds_come_from_the_spec() -> None:
    spec = AnalysisSpec.model_validate({"maxErrorRateIncreasePercent": 2.5, "maxLatencyRatio": 2, "minRequests": 7})
    assert Thresholds.of(spec) == Thresholds(0.025, 2.0, 7)
    assert Thresholds.of(AnalysisSpec()) == Thresholds()


# The hook in desired/rollout.py: the verdict joins the crash-loop watch and readiness.


def _holding(old_stable: dict[str, Any], **rollout: Any) -> tuple[dict[str, Any], tuple[Any, ...], Any, Any]:
    old = _hash(old_stable)
    pods = tuple(_pod(f"old-{i}", old, canary=False, ready_at=0) for i in range(REPLICAS))
    first = _look(_llama(2, "0.32.0", **rollout), progressive.View(old_stable, None, pods, T0))
    new = _hash(_stable_of(first, "llama31-8b-canary"))
    olds = tuple(_pod(f"old-{i}", old, canary=False, ready_at=0) for i in range(REPLICAS - 1))
    canary_pod = _pod("canary-0", new, canary=True, ready_at=10, created=5)
    stable_live = _live(_stable_of(first))
    canary_live = _live({**_stable_of(first, "llama31-8b-canary"), "spec": {"replicas": 1}})
    return first.status, (*olds, canary_pod), stable_live, canary_live


@pytest.fixture
def old_stable() -> dict[str, Any]:
    state = desired_state(_llama(1, "0.31.0"), INPUTS, workload=None, now=T0, apply=True)
    assert state is not None
    return _live(_stable_of(state))


def test_a_metric_regression_halts_the_rollout_with_its_figures(old_stable: dict[str, Any]) -> None:
    status, pods, stable_live, canary_live = _holding(old_stable)
    failed = Verdict("Fail", "error rate regressed: canary 50.00% (...), stable 0.00%; threshold 1.00%", "error rate")
    view = progressive.View(stable_live, canary_live, pods, _t(40), failed)
    state = _look(_llama(2, "0.32.0", status), view)
    rollout = state.status["rollout"]
    assert (rollout["phase"], rollout["verdict"], rollout["reason"]) == ("Halted", "Failed", "MetricRegression")
    assert rollout["message"].startswith("step 1: canary error rate regressed: canary 50.00%")
    assert rollout["message"].endswith("returned to the previous configuration")
    assert state.prune == ("llama31-8b-canary",)
    assert _stable_of(state)["spec"]["template"] == old_stable["spec"]["template"]
    events = [
        (e.type, e.reason)
        for e in state.events
        if e.reason in {reason for _, reason in progressive.EVENT_REASONS.values()}
    ]
    assert events == [("Warning", "RolloutHalted")]
    assert "error rate regressed" in next(e.message for e in state.events if e.reason == "RolloutHalted")

    before = ROLLOUTS.labels("Halted", "MetricRegression")._value.get()
    observe_rollout(status["rollout"], rollout)
    assert ROLLOUTS.labels("Halted", "MetricRegression")._value.get() == before + 1


@pytest.mark.parametrize("outcome", ["Pass", "Inconclusive"])
def test_a_passing_or_inconclusive_analysis_lets_the_window_promote(old_stable: dict[str, Any], outcome: str) -> None:
    status, pods, stable_live, canary_live = _holding(old_stable)
    verdict = Verdict(outcome, f"{outcome} figures")  # type: ignore[arg-type]
    held = _look(_llama(2, "0.32.0", status), progressive.View(stable_live, canary_live, pods, _t(30), verdict))
    assert held.status["rollout"]["reason"] == "Holding"
    promoted = _look(
        _llama(2, "0.32.0", held.status), progressive.View(stable_live, canary_live, pods, _t(71), verdict)
    )
    rollout = promoted.status["rollout"]
    assert (rollout["phase"], rollout["verdict"]) == ("Promoting", "Passed")
    assert rollout["message"].endswith(f"the rest follow; {outcome} figures")


def _state(status: dict[str, Any], **analysis: Any) -> Any:
    state = desired_state(_llama(2, "0.32.0", status, analysis=analysis), INPUTS, workload=None, now=T0, apply=True)
    assert state is not None
    return state


def test_the_analysis_asks_about_the_ready_pods_of_both_tracks_over_the_time_served(old_stable: dict[str, Any]):
    status, pods, _, _ = _holding(old_stable)
    late = _pod("canary-1", "h", canary=True, ready_at=None, created=20)
    question = asking.ask(_state(status), (*pods, late), _t(40), prometheus=True)
    assert question is not None
    assert question.namespace == "ai"
    assert question.canary == ("canary-0",)  # the one not ready serves nothing yet
    assert question.stable == ("old-0", "old-1", "old-2")
    assert question.window_s == 30  # ready at 10 s, looked at 40 s
    assert question.thresholds == Thresholds()
    # At most the stability window (60 s here).
    later = asking.ask(_state(status), pods, _t(500), prometheus=True)
    assert later is not None
    assert later.window_s == 60


def test_the_analysis_asks_nothing_without_prometheus_when_off_or_when_no_canary_holds(old_stable: dict[str, Any]):
    status, pods, _, _ = _holding(old_stable)
    assert asking.ask(_state(status), pods, _t(40), prometheus=False) is None
    assert asking.ask(_state(status, enabled=False), pods, _t(40), prometheus=True) is None
    assert asking.ask(_state(status, enabled=True), pods, _t(40), prometheus=False) is None
    no_canary = tuple(p for p in pods if "canary" not in p["metadata"]["name"])
    assert asking.ask(_state(status), no_canary, _t(40), prometheus=True) is None
    halted = {**status, "rollout": {**status["rollout"], "phase": "Halted"}}
    assert asking.ask(_state(halted), pods, _t(40), prometheus=True) is None
    other = {**status, "rollout": {**status["rollout"], "generation": 1}}
    assert asking.ask(_state(other), pods, _t(40), prometheus=True) is None


def test_one_query_asks_for_every_holding_canary_and_each_reads_its_own_pods() -> None:
    other = ("chat-canary-1", "chat-2", "chat-3")
    query = batch_query([(NAMESPACE, CANARY + STABLE, 300), ("team-b", other, 45)])
    assert query.count("[300s]") == 4
    assert query.count("[45s]") == 4
    assert 'namespace="team-b", pod=~"chat-2|chat-3|chat-canary-1"' in query
    samples = _answer(
        _pod_answer(CANARY[0], ok=80),
        _pod_answer(STABLE[0], ok=80),
        _pod_answer(other[0], ok=0, rejected=80),
        _pod_answer(other[1], ok=80),
    )
    assert _judged(samples).outcome == "Pass"
    assert judge(track_of(samples, other[:1]), track_of(samples, other[1:]), Thresholds()).outcome == "Fail"


def _ask(canary: tuple[str, ...] = CANARY) -> asking.Ask:
    return asking.Ask(NAMESPACE, canary, STABLE, 60, Thresholds())


def test_the_board_gives_a_look_the_latest_verdict_on_its_canary(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(analysis.time, "monotonic", lambda: clock[0])
    board = analysis.Board(active=True, interval_s=2, max_age_s=10)
    key = (NAMESPACE, "llama31-8b")
    passed = Verdict("Pass", "fine")
    assert board.post(key, _ask()) is None  # asked, not answered yet
    assert board.open() == {key: _ask()}
    board.answer(key, _ask(), passed)
    assert board.post(key, _ask()) == passed
    # Another canary pod (a new canary) is not judged by the old answer, nor is a stale answer.
    assert board.post(key, _ask(("llama31-8b-canary-other",))) is None
    board.answer(key, _ask(), passed)
    clock[0] += 11
    assert board.post(key, _ask()) is None
    # A question no look posts again is dropped after a few intervals, with its verdict.
    clock[0] += 2 * analysis.KEPT_INTERVALS + 1
    assert board.open() == {}
    board.answer(key, _ask(), passed)  # a sweep that answers late posts nothing
    assert board.post(key, None) is None
    assert board.open() == {}
