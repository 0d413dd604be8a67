"""Operator options from the command line, set once before kopf starts (read by the startup handler)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Options:
    metrics_address: str = "0.0.0.0"  # noqa: S104 - in a pod, Prometheus scrapes the pod IP
    metrics_port: int = 8081


_current = Options()


def set_options(options: Options) -> None:
    global _current
    _current = options


def options() -> Options:
    return _current
