"""Startup settings the operator applies when kopf starts."""

from __future__ import annotations

import logging

import kopf

from llama_operator.handlers.startup import configure


def test_startup_settings_use_our_api_group() -> None:
    settings = kopf.OperatorSettings()
    configure(settings=settings, logger=logging.getLogger("test"))
    assert settings.persistence.finalizer == "llamaops.dev/finalizer"
    assert settings.posting.level == logging.INFO
