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
