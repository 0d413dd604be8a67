"""A Prometheus outage as the operator's background sweeps log it: once when it starts, once when it ends, never on
every sweep in between (a sweep runs every few seconds)."""

from __future__ import annotations

import logging

from llama_operator.health import PrometheusError


class Outage:
    def __init__(self, log: logging.Logger, down: str, back: str) -> None:
        """``down`` is logged as a warning with the error (one %s); ``back`` as info when Prometheus answers again."""
        self.log, self.down, self.back = log, down, back
        self.failing = False

    def failed(self, error: PrometheusError) -> None:
        if not self.failing:
            self.log.warning(self.down, error)
        self.failing = True

    def answered(self) -> None:
        if self.failing:
            self.log.info(self.back)
        self.failing = False
