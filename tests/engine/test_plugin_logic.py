"""The plugin's pure parts (registry, settings, token check, crash classification) and its loading in a real vLLM
process: entry point discovery, re-entrant register(), lazy imports."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llamaops_vllm import crash, registry, settings
from llamaops_vllm.patches import crash_report
from llamaops_vllm.patches.token_guard import check_prompt

pytestmark = pytest.mark.engine

ROOT = Path(__file__).resolve().parents[2]
CUDA_FIXTURE = ROOT / "e2e" / "fixtures" / "cuda" / "h100-torch2.11-cu130.txt"


@pytest.mark.parametrize(
    ("spec", "version", "matches"),
    [
        (">=0.32.0", "0.32.0", True),
        (">=0.32.0", "0.32.0+cpu", True),
        (">=0.32.0", "0.31.0", False),
        ("==0.8.3", "0.8.3", True),
        ("==0.8.3", "0.8.4", False),
        (">=0.8.3", "0.33.0rc1", True),
        (">=0.8.3", "not-a-version", False),
    ],
)
def test_version_ranges(spec, version, matches):
    assert registry.version_matches(spec, version) is matches


def test_choice_on_0_32_and_on_0_8_3_with_reasons():
    on_032 = registry.choose(registry.PATCHES, "0.32.0", frozenset())
    assert [p.name for p in on_032.chosen] == ["token_guard", "crash_report"]
    assert on_032.skipped == (("chunked_local_attention_block_table", "vllm 0.32.0 outside ==0.8.3"),)
    on_083 = registry.choose(registry.PATCHES, "0.8.3", frozenset({"crash_report"}))
    assert [p.name for p in on_083.chosen] == ["chunked_local_attention_block_table"]
    assert on_083.skipped == (
        ("token_guard", "vllm 0.8.3 outside >=0.32.0"),
        ("crash_report", "disabled by LLAMAOPS_DISABLED_PATCHES"),
    )


def test_summary_line():
    line = registry.summary_line(["a", "b"], [("c", "why")], "0.32.0", "0.1.0")
    assert line == "llamaops plugin 0.1.0 on vllm 0.32.0: applied a,b; skipped c (why)"
    assert registry.summary_line([], [], "0", "0.1.0").endswith("applied none; skipped none")


def test_settings_from_environment():
    s = settings.read_settings({"LLAMAOPS_DISABLED_PATCHES": " token_guard, ,crash_report "})
    assert s.disabled_patches == frozenset({"token_guard", "crash_report"})
    assert s.termination_message_path == "/dev/termination-log"
    s = settings.read_settings({"LLAMAOPS_TERMINATION_MESSAGE_PATH": "/tmp/t"})
    assert s == settings.Settings(frozenset(), "/tmp/t")


@pytest.mark.parametrize(
    ("ids", "max_len", "refused_for"),
    [
        ([0, 5, 999], 512, None),
        ([5, 1000], 512, "prompt token id 1000 is outside the model's vocabulary [0, 1000)"),
        ([-1, 5], 512, "prompt token id -1 is outside"),
        ([5] * 511, 512, None),
        ([5] * 512, 512, "prompt of 512 tokens leaves no room for output within max_model_len 512"),
        ([5] * 512, None, None),
        ([], 512, None),  # empty prompts are vLLM's own error
    ],
)
def test_check_prompt(ids, max_len, refused_for):
    reason = check_prompt(ids, 1000, max_len)
    if refused_for is None:
        assert reason is None
    else:
        assert reason is not None
        assert reason.startswith(refused_for)
        assert "llama-operator token guard" in reason


def fixture_sections() -> dict[str, str]:
    # Real CUDA failure output captured on an H100 (e2e/fixtures/cuda): "=== name: exit=N" sections.
    sections: dict[str, str] = {}
    for block in CUDA_FIXTURE.read_text().split("=== ")[1:]:
        name, _, body = block.partition(":")
        sections[name] = body
    return sections


def test_classifies_real_cuda_failures():
    s = fixture_sections()
    oov = crash.classify(s["embedding_oov"], "0.32.0", "0.1.0")
    assert (oov.signature, oov.known_issue) == ("cuda_device_side_assert", "out_of_vocab_token_ids")
    assert "Assertion `srcIndex < srcSelectDimSize` failed" in oov.detail
    overrun = crash.classify(s["block_table_gather"], "0.8.3", "0.1.0")
    assert (overrun.signature, overrun.known_issue) == (
        "cuda_device_side_assert",
        "chunked_local_attention_block_table_overrun",
    )
    # The same generic gather assert names that issue only on the release that has it.
    assert crash.classify(s["block_table_gather"], "0.32.0", "0.1.0").known_issue is None
    assert crash.classify(s["block_table_gather_clamped"], "0.8.3", "0.1.0").signature == "unknown"


def test_classifies_engine_death_and_other_signatures():
    dead = crash.classify(
        "RuntimeError: Worker failed with error 'index out of range in self'\nEngineDeadError", "0.32.0", "0.1.0"
    )
    assert (dead.signature, dead.known_issue) == ("engine_dead", "out_of_vocab_token_ids")
    assert (
        crash.classify("torch.OutOfMemoryError: CUDA out of memory.", "0.32.0", "x").signature == "cuda_out_of_memory"
    )
    assert crash.classify("an illegal memory access was encountered", "0.32.0", "x").signature == (
        "cuda_illegal_memory_access"
    )
    assert crash.classify("NCCL error in: ProcessGroupNCCL.cpp", "0.32.0", "x").signature == "nccl_error"
    line = json.loads(dead.line())
    assert line == {
        "llamaops": "crash",
        "signature": "engine_dead",
        "known_issue": "out_of_vocab_token_ids",
        "vllm_version": "0.32.0",
        "plugin_version": "0.1.0",
        "detail": "RuntimeError: Worker failed with error 'index out of range in self'",
    }
    assert len(crash.classify("x" * 100_000 + "\nValueError: " + "y" * 10_000, "0", "0").line()) < 1024


def test_report_keeps_the_most_specific_line(tmp_path):
    path = str(tmp_path / "termination-log")
    assert not crash_report.report("nothing fatal here", path, "0.32.0")
    assert not (tmp_path / "termination-log").exists()
    assert crash_report.report("EngineDeadError: EngineCore encountered an issue", path, "0.32.0")
    assert json.loads(Path(path).read_text())["signature"] == "engine_dead"
    assert crash_report.report("RuntimeError: CUDA error: device-side assert triggered", path, "0.32.0")
    assert json.loads(Path(path).read_text())["signature"] == "cuda_device_side_assert"
    # A later, less specific report from another process does not overwrite it.
    assert not crash_report.report("EngineDeadError", path, "0.32.0")
    assert len(Path(path).read_text().splitlines()) == 1
    # Not writable: no report, no exception.
    assert not crash_report.report("EngineDeadError", str(tmp_path / "missing" / "dir" / "f"), "0.32.0")


def run_python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    environ = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=300)


def test_importing_the_plugin_imports_nothing_heavy():
    out = run_python(
        "import sys, llamaops_vllm; print(sorted(m for m in ('vllm', 'torch', 'numpy', 'prometheus_client')"
        " if m in sys.modules))"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_vllm_discovers_the_entry_point_and_register_is_reentrant(tmp_path):
    code = """
import logging
import llamaops_vllm
from llamaops_vllm import loader
from vllm.plugins import load_general_plugins
from vllm.v1.engine.input_processor import InputProcessor
load_general_plugins()
guarded = InputProcessor._validate_model_input
llamaops_vllm.register()
llamaops_vllm.register()
assert InputProcessor._validate_model_input is guarded
assert getattr(guarded, "_llamaops_token_guard", False)
print("APPLIED", loader.APPLIED)
handlers = [h for h in logging.getLogger("vllm").handlers if getattr(h, "_llamaops_crash_report", False)]
print("HANDLERS", len(handlers))
from vllm.logger import configure_logging
from vllm.config.logging import LoggingConfig
configure_logging(LoggingConfig())
handlers = [h for h in logging.getLogger("vllm").handlers if getattr(h, "_llamaops_crash_report", False)]
print("HANDLERS_AFTER_LOGGING_CONFIG", len(handlers))
from prometheus_client import generate_latest
print([l for l in generate_latest().decode().splitlines() if l.startswith("llamaops_patch_info")])
"""
    out = run_python(code, {"VLLM_PLUGINS": "llamaops", "LLAMAOPS_TERMINATION_MESSAGE_PATH": str(tmp_path / "t")})
    assert out.returncode == 0, out.stderr[-3000:]
    log = out.stdout + out.stderr
    assert log.count("llamaops plugin 0.1.0 on vllm") == 1, log[-3000:]
    assert "APPLIED ['token_guard', 'crash_report']" in out.stdout
    assert "HANDLERS 1" in out.stdout
    assert "HANDLERS_AFTER_LOGGING_CONFIG 1" in out.stdout
    assert 'llamaops_patch_info{patch="token_guard",vllm_version="0.32.0"} 1.0' in out.stdout
