"""The crash report: the engine dies (token guard switched off) and one classified line lands in the
termination-message file."""

import json

import pytest

from tests.engine.server import Server
from tests.engine.tiny_llama4 import FATAL_TOKEN_ID

pytestmark = pytest.mark.engine


def test_engine_death_writes_a_classified_termination_message(tiny_model, tmp_path):
    term = tmp_path / "termination-log"
    server = Server(
        tiny_model,
        tmp_path / "vllm.log",
        plugin=True,
        env={"LLAMAOPS_TERMINATION_MESSAGE_PATH": str(term), "LLAMAOPS_DISABLED_PATCHES": "token_guard"},
    )
    try:
        assert "token_guard (disabled by LLAMAOPS_DISABLED_PATCHES)" in server.log_tail(100_000)
        assert not term.exists() or term.read_text() == ""
        status, _ = server.complete([5, 6, FATAL_TOKEN_ID])
        assert status == 500
        assert server.wait_exit(120) is not None, server.log_tail()
    finally:
        server.stop()
    lines = term.read_text().splitlines()
    assert len(lines) == 1
    report = json.loads(lines[0])
    assert report["llamaops"] == "crash"
    assert report["signature"] == "engine_dead"
    assert report["known_issue"] == "out_of_vocab_token_ids"
    assert report["vllm_version"] == "0.32.0"
    assert report["plugin_version"] == "0.1.0"
    assert "index out of range" in report["detail"]
