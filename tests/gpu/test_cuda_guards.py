"""On a real GPU: the failures the plugin exists for, and the guards that stop them.

Each case runs in its own Python process: a device-side assert poisons the CUDA context for good, so the process
that trips one is finished. Run on the lent GPU machine (see tests/gpu/README.md); skipped without CUDA.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "images" / "vllm"
sys.path.insert(0, str(PLUGIN))

from llamaops_vllm.crash import classify  # noqa: E402

# Llama-4's text vocabulary (Scout and Maverick); 202048 is a multiple of 64, so vLLM pads nothing past it.
VOCAB = 202_048
MAX_MODEL_LEN = 8192


def run_child(code: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(PLUGIN)]), PYTHONUNBUFFERED="1")
    # The default: errors surface at the next synchronising call, as they do in a serving process.
    env.pop("CUDA_LAUNCH_BLOCKING", None)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=300
    )


def show(name: str, out: subprocess.CompletedProcess[str]) -> None:
    # Kept in the test output (pytest -s / -rA) as the record of what the device said.
    print(f"=== {name}: exit={out.returncode}")
    print(f"stdout: {out.stdout.strip()[:2000]}")
    print(f"stderr: {out.stderr.strip()[:2000]}")


def test_out_of_vocab_embedding_lookup_trips_the_device_side_assert():
    out = run_child(f"""
        import torch
        embedding = torch.nn.Embedding({VOCAB}, 128, device="cuda", dtype=torch.bfloat16)
        ids = torch.tensor([[5, 6, {VOCAB}]], device="cuda")
        embedding(ids)
        torch.cuda.synchronize()
        print("no error")
    """)
    show("embedding_oov", out)
    assert out.returncode != 0
    assert "Assertion `srcIndex < srcSelectDimSize` failed" in out.stderr
    assert "device-side assert triggered" in out.stderr
    report = classify(out.stderr, "0.32.0", "0.1.0")
    assert (report.signature, report.known_issue) == ("cuda_device_side_assert", "out_of_vocab_token_ids")


def test_the_token_guard_keeps_every_out_of_vocab_prompt_off_the_device():
    out = run_child(f"""
        import json, random
        import torch
        from llamaops_vllm.patches.token_guard import check_prompt
        rng = random.Random(0)
        embedding = torch.nn.Embedding({VOCAB}, 128, device="cuda", dtype=torch.bfloat16)
        bad_ids = [{VOCAB}, {VOCAB} + 1, 2**31 - 1, -1]
        counts = {{"looked_up": 0, "refused": 0, "bad_sent": 0}}
        for i in range(400):
            prompt = [rng.randrange({VOCAB}) for _ in range(rng.randrange(1, 256))]
            if i % 2:
                prompt[rng.randrange(len(prompt))] = rng.choice(bad_ids)
                counts["bad_sent"] += 1
            if check_prompt(prompt, {VOCAB}, {MAX_MODEL_LEN}) is not None:
                counts["refused"] += 1
                continue
            embedding(torch.tensor([prompt], device="cuda"))
            torch.cuda.synchronize()
            counts["looked_up"] += 1
        print(json.dumps(counts))
    """)
    show("embedding_guarded", out)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Assertion" not in out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"looked_up": 200, "refused": 200, "bad_sent": 200}


# vllm#16274: max_model_len 4096 below the 8192 chunk; vllm#16157: 1,000,000 with a request in its last 576 tokens.
SCENARIOS = {
    "max_model_len_4096": (4096, [4096, 1], [4096, 1]),
    "max_model_len_1000000": (1_000_000, [999_425, 1_000_000], [1, 1]),
}

CHILD_SETUP = """
    import numpy as np
    import torch
    from tests.engine import vllm083
    max_model_len, seq_lens, q_lens = {scenario!r}
    chunk, page = 8192, 16
    width = -(max_model_len // -page)
    block_table = torch.arange(len(seq_lens) * width, dtype=torch.int32).view(len(seq_lens), width)
    query_start_loc = np.zeros(len(q_lens) + 1, dtype=np.int32)
    query_start_loc[1:] = np.cumsum(q_lens)
    seq_lens = np.array(seq_lens, dtype=np.int32)
"""


def run_scenario(name: str, code: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a child process, after CHILD_SETUP has built scenario ``name``'s batch and block table."""
    return run_child(CHILD_SETUP.format(scenario=SCENARIOS[name]) + code)


@pytest.mark.parametrize("name", SCENARIOS)
def test_vllm_0_8_3_block_table_construction_overruns_on_cuda(name):
    out = run_scenario(
        name,
        """
    original = vllm083.load_original()
    local = original(chunk, query_start_loc, seq_lens, block_table.cuda(), page)
    torch.cuda.synchronize()
    print("no error", local.shape if hasattr(local, "shape") else [t.shape for t in local[3:]])
    """,
    )
    show(f"vllm083_{name}", out)
    assert out.returncode != 0
    assert "index out of bounds" in out.stderr
    assert "device-side assert triggered" in out.stderr
    report = classify(out.stderr, "0.8.3", "0.1.0")
    assert (report.signature, report.known_issue) == (
        "cuda_device_side_assert",
        "chunked_local_attention_block_table_overrun",
    )


@pytest.mark.parametrize("name", SCENARIOS)
def test_our_block_table_construction_stays_in_bounds_on_cuda(name):
    out = run_scenario(
        name,
        """
    ours = vllm083.load_ours()
    on_gpu = ours(chunk, query_start_loc, seq_lens, block_table.cuda(), page)
    torch.cuda.synchronize()
    on_cpu = ours(chunk, query_start_loc, seq_lens, block_table, page)
    assert on_gpu[3].is_cuda and torch.equal(on_gpu[3].cpu(), on_cpu[3])
    for a, b in zip(on_gpu[:3], on_cpu[:3]):
        assert (a == b).all()
    # The pages the kernel reads for each virtual batch are the request's own, in order.
    for v, k_len in enumerate(on_cpu[2]):
        used = -(int(k_len) // -page)
        first_page = (int(seq_lens[v]) - int(k_len)) // page
        assert torch.equal(on_cpu[3][v, :used], block_table[v, first_page : first_page + used])
    print("in bounds", tuple(on_gpu[3].shape), "virtual batches", len(on_cpu[2]))
    """,
    )
    show(f"ours_{name}", out)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Assertion" not in out.stderr
    assert "in bounds" in out.stdout
