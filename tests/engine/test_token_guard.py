"""The token guard in the real OpenAI server (vLLM CPU build, --skip-tokenizer-init), with and without the plugin."""

import random

import pytest

from tests.engine.server import Server
from tests.engine.tiny_llama4 import FATAL_TOKEN_ID, MAX_MODEL_LEN, VOCAB_SIZE

pytestmark = pytest.mark.engine

OOV_PROMPT = [5, 6, FATAL_TOKEN_ID]


def test_without_plugin_an_out_of_vocab_request_kills_the_server(tiny_model, tmp_path):
    server = Server(tiny_model, tmp_path / "vllm.log", plugin=False)
    try:
        assert "llamaops plugin" not in server.log_text()
        status, _ = server.complete([5, 6, 7])
        assert status == 200
        status, body = server.complete(OOV_PROMPT)
        assert status == 500, body
        # The engine is dead and the whole server goes down with it.
        assert server.wait_exit(120) is not None, server.log_tail()
        assert server.health() is None
        assert "IndexError: index out of range in self" in server.log_text()
    finally:
        server.stop()


def test_plugin_is_discovered_through_its_entry_point(patched_server):
    log = patched_server.log_text()
    # One line per vLLM process (API server, engine core, worker), listing what applied and what was skipped and why.
    line = (
        "llamaops plugin 0.1.0 on vllm 0.32.0: applied token_guard,crash_report; "
        "skipped chunked_local_attention_block_table (vllm 0.32.0 outside ==0.8.3)"
    )
    assert log.count(line) == 3, log[-4000:]


def test_out_of_vocab_request_gets_400(patched_server):
    status, body = patched_server.complete(OOV_PROMPT)
    assert status == 400
    message = body["error"]["message"]
    assert f"prompt token id {FATAL_TOKEN_ID} is outside the model's vocabulary [0, {VOCAB_SIZE})" in message
    assert "llama-operator token guard" in message
    assert patched_server.health() == 200


def test_ids_inside_the_padded_embedding_but_past_the_vocab_get_400(patched_server):
    # Unguarded, these read the embedding's padding rows and "succeed" with garbage: the bound is the model's
    # vocab_size, not the size of the allocated table.
    status, body = patched_server.complete([5, VOCAB_SIZE])
    assert status == 400
    assert f"prompt token id {VOCAB_SIZE} is outside" in body["error"]["message"]


def test_prompt_leaving_no_room_for_output_gets_400(patched_server):
    # vLLM 0.32's completions endpoint refuses this itself before the input processor runs (no max_tokens left);
    # the guard's own check (test_plugin_logic.py) covers paths and versions that do not. The point here is the
    # outcome: a client error, and the engine keeps serving.
    status, body = patched_server.complete([5] * MAX_MODEL_LEN)
    assert status == 400, body
    assert patched_server.health() == 200
    status, _ = patched_server.complete([5, 6, 7])
    assert status == 200


def test_server_survives_100_mixed_requests(patched_server):
    rng = random.Random(1)
    bad_kinds = [
        lambda: [5, 6, rng.randrange(VOCAB_SIZE, 10 * VOCAB_SIZE)],
        lambda: [rng.randrange(VOCAB_SIZE, 2**31 - 1)],
        lambda: [3] * MAX_MODEL_LEN,
    ]
    statuses = {"good": [], "bad": []}
    for i in range(100):
        if i % 2 == 0:
            prompt = [rng.randrange(3, VOCAB_SIZE) for _ in range(rng.randrange(1, 64))]
            status, body = patched_server.complete(prompt, max_tokens=2)
            assert status == 200, body
            assert body["usage"]["completion_tokens"] == 2
            statuses["good"].append(status)
        else:
            status, body = patched_server.complete(bad_kinds[i % 3]())
            assert status == 400, body
            statuses["bad"].append(status)
    assert statuses == {"good": [200] * 50, "bad": [400] * 50}
    assert patched_server.health() == 200
    status, _ = patched_server.complete([5, 6, 7])
    assert status == 200
    assert patched_server.proc.poll() is None


def test_patch_metric_on_vllm_metrics(patched_server):
    metrics = patched_server.get("/metrics")
    assert "# TYPE llamaops_patch_info gauge" in metrics
    assert 'llamaops_patch_info{patch="token_guard",vllm_version="0.32.0"} 1.0' in metrics
    assert 'llamaops_patch_info{patch="crash_report",vllm_version="0.32.0"} 1.0' in metrics
    assert "chunked_local_attention_block_table" not in metrics
