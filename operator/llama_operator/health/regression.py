"""The canary's metric analysis (pure): vLLM's own error and latency metrics of the canary pods against the stable
pods over the same window, after Flagger's metric checks and Argo Rollouts' AnalysisTemplate (thresholds relative
to the stable baseline, a minimum request count, no verdict without traffic).

What vLLM exports, in the releases this project supports (0.8.3 to 0.32):

- ``http_requests_total{handler, method, status}`` (prometheus-fastapi-instrumentator; status grouped as 2xx, 4xx,
  5xx): every answer of the OpenAI server, including requests it rejects before the engine sees them (a prompt
  beyond ``max_model_len``, invalid sampling parameters). vLLM >= 0.10 always exports it; 0.8.x only with
  PROMETHEUS_MULTIPROC_DIR set.
- ``vllm:request_success_total{finished_reason}``: requests the engine finished, by reason: stop, length, abort
  (the client went away or the server aborted it), and from V1 on error (a request-level internal error, answered
  500) and repetition.
- ``vllm:time_to_first_token_seconds`` and ``vllm:e2e_request_latency_seconds``: histograms.

The error rate is the share of the OpenAI endpoints' answers that are 4xx or 5xx (a canary that rejects what the
stable replicas serve has regressed; a client's own mistakes hit both alike and cancel out), and the engine's
failure rate the share of finished requests that were aborted or failed. Latency is the p90 of time to first token
and of end-to-end latency, interpolated in the buckets as Prometheus's histogram_quantile does.

One instant query (``analysis_query``) asks for every series of every pod of both tracks at once, and one
(``batch_query``) for every holding canary of the fleet.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from llama_operator.api.rollout import AnalysisSpec
from llama_operator.health.promql import Sample, label_regex_for, quote

SERIES_LABEL = "llamaops_series"
REQUESTS, FINISHED, TTFT, E2E = "requests", "finished", "ttft", "e2e"
# The OpenAI server's endpoints (not /metrics, /health, /tokenize ...), by the instrumentator's route label.
OPENAI_HANDLERS = "/v1/.+"
FAILED_STATUSES = frozenset({"4xx", "5xx"})
FAILED_FINISHES = frozenset({"abort", "error"})
QUANTILE = 0.9
# Latencies closer than this never count as a regression: below it the buckets (vLLM's first TTFT buckets are 1,
# 5, 10, 20, 40 ms) and the scheduler's noise decide, not the configuration.
MIN_LATENCY_DIFFERENCE_S = 0.05
Outcome = Literal["Pass", "Fail", "Inconclusive"]


@dataclass(frozen=True, slots=True)
class Thresholds:
    """spec.rollout.analysis as numbers: the error rates as fractions."""

    max_error_rate_increase: float = 0.01
    max_latency_ratio: float = 1.5
    min_requests: int = 50

    @classmethod
    def of(cls, spec: AnalysisSpec) -> Thresholds:
        return cls(spec.max_error_rate_increase_percent / 100, spec.max_latency_ratio, spec.min_requests)


@dataclass(frozen=True, slots=True)
class Track:
    """The window's increases, summed over the pods of one track (canary or stable)."""

    requests: float = 0.0  # answers of the OpenAI endpoints
    failed: float = 0.0  # of those, 4xx and 5xx
    finished: float = 0.0  # requests the engine finished
    aborted: float = 0.0  # of those, aborted or failed
    ttft: tuple[tuple[float, float], ...] = ()  # cumulative (upper bound, count) buckets, +Inf last
    e2e: tuple[tuple[float, float], ...] = ()

    @property
    def served(self) -> float:
        """Requests seen: the server's answers where it exports them, else the engine's finished requests."""
        return self.requests if self.requests > 0 else self.finished


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    message: str
    metric: str = ""  # the metric that failed, e.g. "error rate"


def analysis_query(namespace: str, pods: Collection[str], window_s: int) -> str:
    """One instant query: each pod's increase over the last ``window_s`` seconds of what the analysis reads, each
    kind tagged with SERIES_LABEL (increase() drops the metric name, and ``or`` keeps series whose labels differ)."""
    where = f"namespace={quote(namespace)}, pod=~{quote(label_regex_for(pods))}"
    window = f"[{max(1, int(window_s))}s]"

    def tagged(expr: str, by: str, tag: str) -> str:
        summed = f"sum by (namespace, pod, {by}) (increase({expr}{window}))"
        return f'label_replace({summed}, "{SERIES_LABEL}", "{tag}", "", "")'

    return " or ".join(
        (
            tagged(f"http_requests_total{{{where}, handler=~{quote(OPENAI_HANDLERS)}}}", "status", REQUESTS),
            tagged(f"vllm:request_success_total{{{where}}}", "finished_reason", FINISHED),
            tagged(f"vllm:time_to_first_token_seconds_bucket{{{where}}}", "le", TTFT),
            tagged(f"vllm:e2e_request_latency_seconds_bucket{{{where}}}", "le", E2E),
        )
    )


def batch_query(questions: Iterable[tuple[str, Collection[str], int]]) -> str:
    """One instant query for several deployments' ``analysis_query`` (namespace, pods of both tracks, window): each
    pod belongs to one deployment, so ``or`` keeps every series and ``track_of`` splits them by pod."""
    return " or ".join(analysis_query(namespace, pods, window_s) for namespace, pods, window_s in questions)


def _buckets(found: Mapping[float, float]) -> tuple[tuple[float, float], ...]:
    # increase() extrapolates each bucket on its own: keep the counts cumulative, as histogram_quantile does.
    out: list[tuple[float, float]] = []
    top = 0.0
    for bound in sorted(found):
        top = max(top, found[bound])
        out.append((bound, top))
    return tuple(out)


def track_of(samples: Iterable[Sample], pods: Collection[str]) -> Track:
    """The answer to ``analysis_query``, summed over ``pods``."""
    wanted = set(pods)
    requests = failed = finished = aborted = 0.0
    ttft: dict[float, float] = {}
    e2e: dict[float, float] = {}
    for sample in samples:
        labels = sample.labels
        value = sample.value
        if labels.get("pod") not in wanted or not math.isfinite(value):
            continue
        kind = labels.get(SERIES_LABEL)
        if kind == REQUESTS:
            requests += value
            failed += value if labels.get("status") in FAILED_STATUSES else 0.0
        elif kind == FINISHED:
            finished += value
            aborted += value if labels.get("finished_reason") in FAILED_FINISHES else 0.0
        elif kind in (TTFT, E2E):
            try:
                bound = float(labels.get("le", ""))
            except ValueError:
                continue
            histogram = ttft if kind == TTFT else e2e
            histogram[bound] = histogram.get(bound, 0.0) + value
    return Track(requests, failed, finished, aborted, _buckets(ttft), _buckets(e2e))


def quantile(q: float, buckets: tuple[tuple[float, float], ...]) -> float | None:
    """Prometheus's histogram_quantile over cumulative (upper bound, count) buckets; None without observations."""
    if not buckets or buckets[-1][0] != math.inf or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for index, (bound, count) in enumerate(buckets):
        if count >= rank:
            if bound == math.inf:
                return buckets[index - 1][0] if index > 0 else None
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return None


def _share(part: float, whole: float) -> float:
    return part / whole if whole > 0 else 0.0


def _percent(value: float) -> str:
    return f"{100 * value:.2f}%"


def _seconds(value: float) -> str:
    return f"{value:.3f} s"


def judge(canary: Track, stable: Track, thresholds: Thresholds) -> Verdict:
    """Pass, Fail (naming the metric, both values and the threshold) or Inconclusive (too little traffic)."""
    need = thresholds.min_requests
    if canary.served <= 0 and stable.served <= 0:
        return Verdict(
            "Inconclusive",
            "no vLLM request metrics for the canary or the stable pods in the window: no traffic, or Prometheus "
            "does not scrape the pods' vLLM metrics with their namespace and pod labels",
        )
    if canary.served < need or stable.served < need:
        return Verdict(
            "Inconclusive",
            f"too little traffic to judge the canary on metrics: the canary served {canary.served:.0f} and the "
            f"stable replicas {stable.served:.0f} requests in the window, {need} each are needed",
        )
    figures: list[str] = []
    rates = (
        ("error rate", "4xx/5xx answers", canary.failed, canary.requests, stable.failed, stable.requests),
        ("engine failure rate", "aborted or failed requests", canary.aborted, canary.finished, stable.aborted,
         stable.finished),
    )  # fmt: skip
    for metric, what, bad, total, stable_bad, stable_total in rates:
        if total < need or stable_total < need:
            continue  # not exported by this vLLM (or too few): the other rate judges
        rate, baseline = _share(bad, total), _share(stable_bad, stable_total)
        limit = baseline + thresholds.max_error_rate_increase
        if rate > limit:
            return Verdict(
                "Fail",
                f"{metric} regressed: canary {_percent(rate)} ({what}: {bad:.0f} of {total:.0f}), stable "
                f"{_percent(baseline)} ({stable_bad:.0f} of {stable_total:.0f}); threshold {_percent(limit)} (stable "
                f"+ {100 * thresholds.max_error_rate_increase:g} percentage points)",
                metric,
            )
        figures.append(f"{metric} {_percent(rate)} vs {_percent(baseline)}")
    for metric, ours, theirs in (
        ("p90 time to first token", canary.ttft, stable.ttft),
        ("p90 end-to-end latency", canary.e2e, stable.e2e),
    ):
        if not ours or not theirs or ours[-1][1] < need or theirs[-1][1] < need:
            continue
        found, stable_found = quantile(QUANTILE, ours), quantile(QUANTILE, theirs)
        if found is None or stable_found is None:
            continue
        value, baseline = found, stable_found
        limit = max(baseline * thresholds.max_latency_ratio, baseline + MIN_LATENCY_DIFFERENCE_S)
        if value > limit:
            return Verdict(
                "Fail",
                f"{metric} regressed: canary {_seconds(value)}, stable {_seconds(baseline)}; threshold "
                f"{_seconds(limit)} ({thresholds.max_latency_ratio:g} x stable, at least stable + "
                f"{1000 * MIN_LATENCY_DIFFERENCE_S:.0f} ms)",
                metric,
            )
        figures.append(f"{metric} {_seconds(value)} vs {_seconds(baseline)}")
    if not figures:
        return Verdict("Inconclusive", "vLLM's error and latency metrics were not found for both tracks")
    return Verdict(
        "Pass",
        f"metrics within thresholds over {canary.served:.0f} canary and {stable.served:.0f} stable requests: "
        + ", ".join(figures),
    )
