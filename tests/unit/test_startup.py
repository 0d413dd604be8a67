"""Startup settings the operator applies when kopf starts."""

from __future__ import annotations

import logging

import kopf

from llama_operator.handlers.startup import apply_settings


def test_startup_settings_use_our_api_group() -> None:
    settings = kopf.OperatorSettings()
    apply_settings(settings)
    assert settings.persistence.finalizer == "llamaops.dev/finalizer"
    # Events come from the handlers' condition transitions, plus kopf's for warnings and errors.
    assert settings.posting.level == logging.WARNING


def test_startup_settings_for_bursts_of_objects() -> None:
    from llama_operator.handlers import kube

    settings = kopf.OperatorSettings()
    apply_settings(settings)
    # A handler thread per kept-alive API connection, and more of them than kopf's default (CPUs + 4).
    assert settings.execution.max_workers == kube.WORKERS
    assert kube.WORKERS > 8
    assert settings.persistence.consistency_timeout > 5.0
    # Bounded per-object workers: peak memory no longer grows with the size of a burst.
    assert settings.queueing.worker_limit is not None
    assert settings.queueing.worker_limit > kube.WORKERS
