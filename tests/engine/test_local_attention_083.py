"""Our bounds-safe virtual-batch construction against vLLM 0.8.3's original, taken from the released wheel.

On the CPU an out-of-bounds gather raises IndexError where CUDA trips a device-side assert (tests/gpu covers that),
so the original's overrun shows up here as an exception.
"""

import ast
import sys
import types
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from llamaops_vllm.patches import local_attention_083
from tests.engine import vllm083

pytestmark = pytest.mark.engine

PAD = -7  # fills columns past the real table when we let the original run without overrunning


@pytest.fixture(scope="module")
def original():
    return vllm083.load_original()


ours = local_attention_083.make_local_attention_virtual_batches


def cdiv(a: int, b: int) -> int:
    return -(a // -b)


def batch(seq_lens: list[int], q_lens: list[int]) -> tuple[np.ndarray, np.ndarray]:
    # int32, as 0.8.3's GPUModelRunner holds them.
    query_start_loc = np.zeros(len(q_lens) + 1, dtype=np.int32)
    query_start_loc[1:] = np.cumsum(q_lens)
    return query_start_loc, np.array(seq_lens, dtype=np.int32)


def table(rows: int, max_model_len: int, page: int, rng: np.random.Generator) -> torch.Tensor:
    width = cdiv(max_model_len, page)
    return torch.from_numpy(rng.permutation(rows * width).astype(np.int32).reshape(rows, width))


def assert_same(a, b) -> None:
    for x, y in zip(a[:3], b[:3], strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)
    assert a[3].dtype == b[3].dtype
    assert torch.equal(a[3], b[3])


def overruns_table(original, *args) -> bool:
    try:
        original(*args)
    except IndexError as exc:
        if "out of bounds" not in str(exc):
            raise
        return True
    return False


def random_batch(rng: np.random.Generator, max_model_len: int) -> tuple[list[int], list[int]]:
    n = int(rng.integers(1, 6))
    seq_lens = [int(rng.integers(1, max_model_len + 1)) for _ in range(n)]
    # Mix decodes, short and long prefill pieces, and whole prompts.
    q_lens = [int(rng.choice([1, s, rng.integers(1, s + 1)])) for s in seq_lens]
    return seq_lens, q_lens


GEOMETRIES = [  # (chunk, page, max_model_len)
    (4, 2, 20),
    (8, 4, 37),
    (16, 16, 64),
    (128, 16, 1000),
    (128, 128, 1024),
    (8192, 16, 20000),
    (8192, 16, 32768),
]


def random_cases(seed: int) -> Iterator[tuple[int, int, np.ndarray, np.ndarray, torch.Tensor]]:
    """60 random batches per geometry, the same ones for the same seed: (chunk, page, query_start_loc, seq_lens,
    block_table)."""
    rng = np.random.default_rng(seed)
    for chunk, page, max_model_len in GEOMETRIES:
        for _ in range(60):
            seq_lens, q_lens = random_batch(rng, max_model_len)
            qsl, sl = batch(seq_lens, q_lens)
            yield chunk, page, qsl, sl, table(len(seq_lens), max_model_len, page, rng)


def test_identical_to_the_original_wherever_the_original_stays_in_bounds(original):
    compared = 0
    for chunk, page, qsl, sl, bt in random_cases(seed=0):
        if overruns_table(original, chunk, qsl, sl, bt, page):
            continue  # covered below
        assert_same(ours(chunk, qsl, sl, bt, page), original(chunk, qsl, sl, bt, page))
        compared += 1
    # Most random batches stay in bounds (the danger window is the last, partial chunk): the comparison is real.
    assert compared > 250


def test_in_bounds_where_the_original_overruns_and_otherwise_the_same(original):
    overruns = 0
    for chunk, page, qsl, sl, bt in random_cases(seed=1):
        if not overruns_table(original, chunk, qsl, sl, bt, page):
            continue
        overruns += 1
        got = ours(chunk, qsl, sl, bt, page)
        # What the original meant: run it on a table widened with padding it may read without overrunning.
        wide = torch.nn.functional.pad(bt, (0, chunk // page), value=PAD)
        meant = original(chunk, qsl, sl, wide, page)
        for x, y in zip(got[:3], meant[:3], strict=True):
            assert x.dtype == y.dtype
            np.testing.assert_array_equal(x, y)
        assert (meant[3] == PAD).any()  # the original really read past the table
        assert not (got[3] == PAD).any()
        # Every page the kernel reads (those holding the virtual batch's keys) is the same.
        for v, k_len in enumerate(got[2]):
            used = cdiv(int(k_len), page)
            assert torch.equal(got[3][v, :used], meant[3][v, :used])
    assert overruns > 20


def test_max_model_len_below_the_chunk_overruns_on_every_request(original):
    # vllm#16274: max_model_len 4096 < attention_chunk_size 8192, block 16: the table is 256 wide, a chunk 512.
    rng = np.random.default_rng(2)
    bt = table(3, 4096, 16, rng)
    for seq_lens, q_lens in ([[1], [1]], [[4096], [4096]], [[17, 4000, 4096], [17, 1, 96]]):
        qsl, sl = batch(seq_lens, q_lens)
        with pytest.raises(IndexError, match="out of bounds"):
            original(8192, qsl, sl, bt[: len(seq_lens)], 16)
        got = ours(8192, qsl, sl, bt[: len(seq_lens)], 16)
        assert got[3].shape == (len(seq_lens), 512)
        for v, k_len in enumerate(got[2]):
            assert k_len == seq_lens[v]
            assert torch.equal(got[3][v, : cdiv(seq_lens[v], 16)], bt[v, : cdiv(seq_lens[v], 16)])


def test_a_request_inside_the_last_576_tokens_of_a_million_overruns(original):
    # vllm#16157: max_model_len 1,000,000 = 122 chunks of 8192 + 576: the last, partial chunk's 512 pages run
    # past the table's 62,500 columns.
    rng = np.random.default_rng(3)
    bt = table(1, 1_000_000, 16, rng)
    assert bt.shape[1] == 62_500
    for seq_len, q_len in ((999_425, 1), (1_000_000, 1), (999_900, 2048), (1_000_000, 1_000_000)):
        qsl, sl = batch([seq_len], [q_len])
        with pytest.raises(IndexError, match="out of bounds"):
            original(8192, qsl, sl, bt, 16)
        got = ours(8192, qsl, sl, bt, 16)
        last = got[3][-1]
        used = cdiv(seq_len - 122 * 8192, 16)
        assert torch.equal(last[:used], bt[0, 122 * 512 : 122 * 512 + used])
        assert int(got[2][-1]) == seq_len - 122 * 8192
    # One token before the window: the original stays in bounds and both agree.
    qsl, sl = batch([999_424], [1])
    assert_same(ours(8192, qsl, sl, bt, 16), original(8192, qsl, sl, bt, 16))


def test_the_backend_looks_the_function_up_in_its_module_globals():
    # install() replaces the module attribute; that takes effect only if 0.8.3's metadata builder calls the
    # function by its global name and no other module of the release holds its own reference.
    tree = ast.parse(vllm083.backend_source())
    builder = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "FlashAttentionMetadataBuilder")
    calls = [
        n
        for n in ast.walk(builder)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == vllm083.FUNCTION
    ]
    assert len(calls) == 1
    assert vllm083.modules_naming_function() == [vllm083.BACKEND]


def test_install_replaces_the_original_in_the_backend_module(original, monkeypatch):
    module = types.ModuleType(local_attention_083.TARGET_MODULE)
    module.make_local_attention_virtual_batches = original
    monkeypatch.setitem(sys.modules, local_attention_083.TARGET_MODULE, module)
    assert local_attention_083.apply() is None
    assert module.make_local_attention_virtual_batches is ours
    assert local_attention_083.install(module) is None  # re-entrant
    assert module.make_local_attention_virtual_batches is ours
    assert local_attention_083.install(types.ModuleType("elsewhere")) == (
        "elsewhere.make_local_attention_virtual_batches not present"
    )
