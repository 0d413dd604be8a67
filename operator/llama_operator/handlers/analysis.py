"""The canary's metric analysis, the reading side: one Prometheus query per interval for every holding canary of the
fleet, not one per deployment (as handlers.fleet does for crash loops).

A rollout look (handlers.rollout) posts its question (desired.analysis.ask: the canary and stable pods that serve,
the window) on the board and takes the latest verdict for the same canary pods, if fresh. When Prometheus is
configured, one background thread asks every LLAMAOPS_PROMETHEUS_INTERVAL seconds one query made of every posted
question (health.regression.batch_query), judges each deployment's share of the answer (health.regression.judge)
and posts the verdicts. A question no look has posted for a few intervals (the canary ended, the operator lost its
lease) is dropped. So a verdict lags its question by at most one interval, and the query rate is one per interval
while any canary holds, none otherwise.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from llama_operator.desired import Desired
from llama_operator.desired.analysis import Ask, ask
from llama_operator.handlers import metrics
from llama_operator.handlers.outage import Outage
from llama_operator.health import PrometheusError
from llama_operator.health.prometheus import PrometheusClient
from llama_operator.health.regression import Verdict, batch_query, judge, track_of

log = logging.getLogger(__name__)
Key = tuple[str, str]  # (namespace, LlamaDeployment name)
KEPT_INTERVALS = 5  # a question not posted again within this many intervals is dropped


@dataclass
class Board:
    """The posted questions and the latest verdicts. ``active``: a sweep thread answers (Prometheus configured)."""

    active: bool = False
    interval_s: float = 2.0
    max_age_s: float = 10.0
    _questions: dict[Key, tuple[float, Ask]] = field(default_factory=dict)
    _verdicts: dict[Key, tuple[float, Ask, Verdict]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def post(self, key: Key, question: Ask | None) -> Verdict | None:
        """Post this look's question (None: nothing to ask any more); the latest fresh verdict on the same canary
        pods, or None."""
        now = time.monotonic()
        with self._lock:
            if question is None:
                self._questions.pop(key, None)
                self._verdicts.pop(key, None)
                return None
            self._questions[key] = (now, question)
            found = self._verdicts.get(key)
        if found is None or found[1].canary != question.canary or now - found[0] > self.max_age_s:
            return None
        return found[2]

    def open(self) -> dict[Key, Ask]:
        """The questions posted within the last KEPT_INTERVALS intervals; older ones are dropped."""
        now = time.monotonic()
        with self._lock:
            for key in [
                k for k, (posted, _) in self._questions.items() if now - posted > KEPT_INTERVALS * self.interval_s
            ]:
                del self._questions[key]
                self._verdicts.pop(key, None)
            return {key: question for key, (_, question) in self._questions.items()}

    def answer(self, key: Key, question: Ask, verdict: Verdict) -> None:
        with self._lock:
            if key in self._questions:
                self._verdicts[key] = (time.monotonic(), question, verdict)


BOARD = Board()


def verdict(state: Desired, pods: Iterable[Mapping[str, Any]], now: datetime, board: Board = BOARD) -> Verdict | None:
    """The canary's verdict on vLLM's metrics for this look; None when there is nothing to judge (no canary holds,
    analysis off, no Prometheus) or no fresh answer yet (crash loop and readiness still decide)."""
    question = ask(state, pods, now, board.active)
    return board.post((state.owner.namespace, state.owner.name), question)


def sweep(client: PrometheusClient, board: Board) -> int:
    """One query for every open question; their verdicts posted. Returns how many were judged. Raises
    PrometheusError."""
    questions = board.open()
    if not questions:
        return 0
    query = batch_query((q.namespace, q.canary + q.stable, q.window_s) for q in questions.values())
    try:
        answer = client.query(query)
    except PrometheusError:
        metrics.PROMETHEUS_QUERIES.labels("error").inc()
        raise
    metrics.PROMETHEUS_QUERIES.labels("ok").inc()
    for key, question in questions.items():
        canary, stable = track_of(answer.samples, question.canary), track_of(answer.samples, question.stable)
        board.answer(key, question, judge(canary, stable, question.thresholds))
    return len(questions)


def start(client: PrometheusClient, interval_s: float, stop: threading.Event, board: Board = BOARD) -> threading.Thread:
    """Sweep every ``interval_s`` until ``stop`` is set; the board's verdicts count from now on."""
    board.interval_s = interval_s
    board.max_age_s = 2 * interval_s + client.config.timeout_s
    board.active = True

    def loop() -> None:
        outage = Outage(
            log,
            "Prometheus unavailable: canaries are judged without their metrics: %s",
            "Prometheus answers again: canaries are judged on their metrics too",
        )
        while not stop.wait(interval_s):
            try:
                sweep(client, board)
            except PrometheusError as error:
                outage.failed(error)
                continue
            except Exception:
                log.exception("the canaries' metric analysis failed")
                continue
            outage.answered()

    thread = threading.Thread(target=loop, name="llamaops-canary-analysis", daemon=True)
    thread.start()
    return thread
