"""Operator-wide settings, applied once when kopf starts."""

from __future__ import annotations

import logging
import threading
from typing import Any

import kopf
from prometheus_client import start_http_server

from llama_operator import __version__
from llama_operator.handlers import crashloop, kube, rechecks, reconcile
from llama_operator.handlers.options import options

# Every object the operator writes (children, status) is owned by this server-side-apply field manager.
FIELD_MANAGER = kube.FIELD_MANAGER


def apply_settings(settings: kopf.OperatorSettings) -> None:
    """kopf's settings for this operator (pure: unit-tested)."""
    # Keep our annotations under our own API group rather than kopf's defaults.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="llamaops.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="llamaops.dev", key="last-handled-configuration"
    )
    settings.persistence.finalizer = "llamaops.dev/finalizer"
    # Handlers post an Event for each condition transition themselves; kopf adds one for each warning and error
    # it logs, rather than one per handler run.
    settings.posting.level = logging.WARNING


_STOP = threading.Event()


@kopf.on.cleanup()
def stop_rechecks(**_: Any) -> None:
    _STOP.set()


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, logger: kopf.Logger, **_: Any) -> None:
    apply_settings(settings)
    kube.load_config()
    opts = options()
    start_http_server(opts.metrics_port, addr=opts.metrics_address)
    rechecks.start({rechecks.CRASH_LOOP: crashloop.recheck, rechecks.KNOWN_GOOD: reconcile.record_known_good}, _STOP)
    logger.info(
        "llama-operator %s starting; metrics on %s:%d/metrics", __version__, opts.metrics_address, opts.metrics_port
    )
