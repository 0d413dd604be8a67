"""Crash classification against real crash output: the H100 CUDA captures (e2e/fixtures/cuda/), the vLLM 0.32 CPU
engine death and the patched image's crash-report line (tests/fixtures/vllm/), plus representative lines of the
other signatures. And: arbitrary messages never break it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llama_operator.api import LlamaDeploymentSpec
from llama_operator.health import (
    SIGNATURES,
    CrashContext,
    Termination,
    classify,
    crash_context,
    parse_crash_report,
)
from llama_operator.knowledge import load_knowledge
from llamaops_sandbox.crashloop import Capture, parse_captures

ROOT = Path(__file__).resolve().parents[2]
CUDA_FIXTURES = sorted((ROOT / "e2e" / "fixtures" / "cuda").glob("*.txt"))
VLLM_FIXTURES = ROOT / "tests" / "fixtures" / "vllm"
CPU_LOG = VLLM_FIXTURES / "cpu-0.32.0-oov-engine-dead.log"
CPU_REPORT = VLLM_FIXTURES / "cpu-0.32.0-oov-termination-log.txt"

BLOCK_TABLE = "chunked_local_attention_block_table_overrun"
OOV = "out_of_vocab_token_ids"

# Every failed case of every capture, with what it must classify as on Scout / vLLM 0.8.3 / maxModelLen 12000
# (exposed to both known issues). A new capture case fails test_every_capture_case_is_expected until added.
EXPECTED = {
    "embedding_oov": ("cuda_device_assert_embedding_oov", OOV),
    "block_table_gather": ("cuda_device_assert_index_oob", BLOCK_TABLE),
}


def spec(version: str = "0.8.3", max_model_len: int = 12000, **engine: Any) -> LlamaDeploymentSpec:
    return LlamaDeploymentSpec.model_validate(
        {
            "model": {"name": "meta-llama/Llama-4-Scout-17B-16E-Instruct"},
            "engine": {"vllmVersion": version, "maxModelLen": max_model_len, "tensorParallelSize": 8, **engine},
            "resources": {"gpuProduct": "NVIDIA-H100-80GB-HBM3"},
        }
    )


def captures() -> dict[str, Capture]:
    found: dict[str, Capture] = {}
    for path in CUDA_FIXTURES:
        found.update(parse_captures(path.read_text(encoding="utf-8")))
    return found


def kubelet_tail(log: str) -> str:
    """What FallbackToLogsOnError keeps of a log: the last 80 lines, at most 2048 bytes (kubelet constants)."""
    text = "\n".join(log.splitlines()[-80:])
    return text.encode()[-2048:].decode(errors="ignore")


def test_every_capture_case_is_expected() -> None:
    assert CUDA_FIXTURES, "no CUDA captures found"
    assert set(captures()) == set(EXPECTED)


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_cuda_capture_as_the_crash_stage_reports_it(case: str) -> None:
    capture = captures()[case]
    result = classify(
        Termination(exit_code=capture.exit_code, reason="Error", message=capture.message), crash_context(spec())
    )
    assert (result.signature, result.known_issue) == EXPECTED[case]
    assert "Assertion `" in result.detail


def test_block_table_assert_is_not_the_known_issue_where_max_model_len_is_chunk_aligned() -> None:
    # 16384 is a multiple of Scout's 8192-token attention chunk: the overrun cannot happen, so the same assert
    # is a crash of unknown cause (and gets a rollback, not a chunk remedy).
    capture = captures()["block_table_gather"]
    result = classify(Termination(exit_code=1, message=capture.message), crash_context(spec(max_model_len=16384)))
    assert result.signature == "cuda_device_assert_index_oob"
    assert result.known_issue is None


def test_block_table_issue_needs_vllm_0_8_3() -> None:
    capture = captures()["block_table_gather"]
    result = classify(Termination(exit_code=1, message=capture.message), crash_context(spec(version="0.8.4")))
    assert result.known_issue is None


def test_embedding_assert_with_the_generic_cuda_line_stays_out_of_vocab() -> None:
    # The full stderr of the embedding assert also says "device-side assert triggered", which is a symptom of the
    # block-table issue too; the assertion line decides.
    capture = captures()["embedding_oov"]
    message = capture.message + "\nRuntimeError: CUDA error: device-side assert triggered"
    result = classify(Termination(exit_code=1, message=message), crash_context(spec()))
    assert (result.signature, result.known_issue) == ("cuda_device_assert_embedding_oov", OOV)


def test_cpu_engine_death_full_log() -> None:
    # The real log of vLLM 0.32.0 (CPU) killed by an out-of-vocabulary prompt id (tests/fixtures/vllm/README.md).
    context = CrashContext(vllm_version="0.32.0", architecture="Llama4ForCausalLM")
    result = classify(Termination(exit_code=1, message=CPU_LOG.read_text(encoding="utf-8")), context)
    assert result.signature == "engine_dead"
    assert result.known_issue == OOV
    # The root cause, not the handled ValueError logged as a warning earlier nor the chained RuntimeError.
    assert result.detail == "IndexError: index out of range in self"


def test_cpu_engine_death_log_tail_loses_the_cause_without_the_plugin() -> None:
    # What a kubelet would keep of that log: the engine's death and shutdown lines at best, never the root cause.
    # This is why the plugin writes a report.
    tail = kubelet_tail(CPU_LOG.read_text(encoding="utf-8"))
    assert "index out of range" not in tail
    result = classify(Termination(exit_code=1, message=tail))
    assert result.signature in ("engine_dead", "unknown")
    assert result.known_issue is None


def test_upstream_exit_code_0_with_no_message_is_unknown() -> None:
    codes = json.loads((VLLM_FIXTURES / "cpu-0.32.0-oov-exit-codes.json").read_text(encoding="utf-8"))
    assert codes["upstream"] == 0  # vLLM exits 0 after its engine died: no log fallback, no message
    assert classify(Termination(exit_code=0, reason="Completed")).signature == "unknown"


def test_plugin_crash_report_line() -> None:
    message = CPU_REPORT.read_text(encoding="utf-8")
    result = classify(Termination(exit_code=0, reason="Completed", message=message))
    assert result.report is not None
    assert result.report.vllm_version == "0.32.0"
    assert (result.signature, result.known_issue) == ("engine_dead", OOV)
    assert "index out of range in self" in result.detail


def test_plugin_device_assert_is_split_by_its_detail() -> None:
    capture = captures()["block_table_gather"]
    line = capture.message.splitlines()[0]
    report = json.dumps(
        {
            "llamaops": "crash",
            "signature": "cuda_device_side_assert",
            "known_issue": BLOCK_TABLE,
            "vllm_version": "0.8.3",
            "plugin_version": "0.1.0",
            "detail": line,
        }
    )
    result = classify(Termination(exit_code=1, message=report))
    assert (result.signature, result.known_issue) == ("cuda_device_assert_index_oob", BLOCK_TABLE)


def test_plugin_report_with_an_unknown_issue_id_falls_back_to_symptoms() -> None:
    report = json.dumps({"llamaops": "crash", "signature": "engine_dead", "known_issue": "no_such_issue", "detail": ""})
    result = classify(Termination(exit_code=1, message=report))
    assert (result.signature, result.known_issue) == ("engine_dead", None)


# Lines as upstream tools print them (torch, NCCL, vLLM, huggingface_hub), one per signature.
REPRESENTATIVE = [
    (
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
        "79.11 GiB of which 1.05 GiB is free.",
        "cuda_oom",
    ),
    ("RuntimeError: CUDA error: an illegal memory access was encountered", "illegal_memory_access"),
    (
        "torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/distributed/c10d/NCCLUtils.hpp:275, "
        "unhandled system error, NCCL version 2.21.5",
        "nccl_error",
    ),
    (
        "ValueError: To serve at least one request with the models's max seq len (1048576), (96.00 GiB KV cache "
        "is needed, which is larger than the available KV cache memory (40.12 GiB).",
        "kv_cache_insufficient",
    ),
    (
        "huggingface_hub.errors.GatedRepoError: 401 Client Error. Cannot access gated repo for url "
        "https://huggingface.co/meta-llama/Llama-4-Scout-17B-16E-Instruct/resolve/main/config.json.",
        "model_auth_failed",
    ),
    (
        "huggingface_hub.errors.LocalEntryNotFoundError: An error happened while trying to locate the file on "
        "the Hub and we cannot find the requested files in the local cache.",
        "model_download_failed",
    ),
    (
        "vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue. See stack trace (above) for "
        "the root cause.",
        "engine_dead",
    ),
    ("RuntimeError: CUDA error: device-side assert triggered", "cuda_device_assert"),
]


@pytest.mark.parametrize(("line", "signature"), REPRESENTATIVE)
def test_representative_lines(line: str, signature: str) -> None:
    assert classify(Termination(exit_code=1, message=f"some output\n{line}\nmore output")).signature == signature


def test_engine_death_alone_names_no_known_issue() -> None:
    # The registry lists EngineDeadError as a symptom of the out-of-vocabulary issue, but every fatal engine error
    # ends in it: on its own it must not pick a remedy.
    result = classify(Termination(exit_code=1, message=REPRESENTATIVE[6][0]))
    assert (result.signature, result.known_issue) == ("engine_dead", None)


def test_oom_killed() -> None:
    assert classify(Termination(exit_code=137, reason="OOMKilled")).signature == "oom_killed"
    assert classify(Termination(exit_code=137, reason="Error", message="")).signature == "oom_killed"
    # A CUDA signature says more than the SIGKILL that followed it.
    cuda_oom = Termination(exit_code=137, reason="Error", message=REPRESENTATIVE[0][0])
    assert classify(cuda_oom).signature == "cuda_oom"


def test_context_of_a_model_outside_the_catalog_keeps_the_version() -> None:
    outside = LlamaDeploymentSpec.model_validate(
        {
            "model": {"name": "org/private-model"},
            "engine": {"vllmVersion": "0.32.0"},
            "resources": {"gpuProduct": "NVIDIA-H100-80GB-HBM3"},
        }
    )
    assert crash_context(outside) == CrashContext(vllm_version="0.32.0")


def test_context_lists_exposed_issues() -> None:
    context = crash_context(spec())
    assert context.architecture == "Llama4ForConditionalGeneration"
    assert context.exposed_issues is not None
    assert {BLOCK_TABLE, OOV} <= context.exposed_issues
    assert BLOCK_TABLE not in (crash_context(spec(max_model_len=16384)).exposed_issues or ())


def test_parse_crash_report_ignores_other_json_and_junk() -> None:
    assert parse_crash_report('{"llamaops": "other"}\n{"llamaops": ') is None
    assert parse_crash_report("[" * 10000 + '"llamaops"') is None
    nested = '{"llamaops": ' + "[" * 100000 + "]" * 100000 + "}"
    assert parse_crash_report(nested) is None


REGISTRY_IDS = {issue.id for issue in load_knowledge().issues}
report_lines = st.fixed_dictionaries(
    {
        "llamaops": st.sampled_from(["crash", "other"]),
        "signature": st.one_of(st.text(max_size=30), st.integers(), st.none()),
        "known_issue": st.one_of(st.sampled_from(sorted(REGISTRY_IDS)), st.text(max_size=30), st.none()),
        "detail": st.one_of(st.text(max_size=200), st.integers()),
    }
).map(json.dumps)
fragments = st.sampled_from(
    [
        *(line for line, _ in REPRESENTATIVE),
        *(capture.message for capture in captures().values()),
        "Assertion `",
        "(Worker pid=1) ERROR 11-23 00:05:21 [x.py:1] IndexError: index out of range in self",
        "{",
        '{"llamaops": "crash"',
    ]
)
messages = st.lists(st.one_of(st.text(max_size=200), fragments, report_lines), max_size=8).map("\n".join)


@settings(max_examples=300, deadline=None)
@given(
    message=messages,
    exit_code=st.one_of(st.none(), st.integers(min_value=-(2**31), max_value=2**31)),
    reason=st.one_of(st.sampled_from(["", "Error", "OOMKilled", "Completed"]), st.text(max_size=20)),
    version=st.one_of(st.none(), st.sampled_from(["0.8.3", "0.32.0", "not-a-version"]), st.text(max_size=10)),
)
def test_any_termination_classifies_without_raising(
    message: str, exit_code: int | None, reason: str, version: str | None
) -> None:
    result = classify(
        Termination(exit_code=exit_code, reason=reason, message=message), CrashContext(vllm_version=version)
    )
    assert result.signature in SIGNATURES
    assert result.known_issue is None or result.known_issue in REGISTRY_IDS
    assert len(result.detail) <= 300
