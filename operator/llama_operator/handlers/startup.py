"""Operator-wide settings, applied once when kopf starts."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from llama_operator import __version__

# Every object the operator writes (children, status) is owned by this server-side-apply field manager.
FIELD_MANAGER = "llama-operator"


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, logger: kopf.Logger, **_: Any) -> None:
    # Keep our annotations under our own API group rather than kopf's defaults.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="llamaops.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="llamaops.dev", key="last-handled-configuration"
    )
    settings.persistence.finalizer = "llamaops.dev/finalizer"
    # Events for INFO and above, so `kubectl describe llama` shows what the operator did.
    settings.posting.level = logging.INFO
    logger.info("llama-operator %s starting", __version__)
