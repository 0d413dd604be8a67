"""Bounds-safe virtual-batch construction for chunked local attention, for vLLM 0.8.3's FlashAttention backend.

0.8.3 gathers `block_table[req, chunk_start // page + arange(chunk // page)]` without a bound: a request in the
last, partial chunk of the table reads past it (vllm#16274, #16157). Pages past the key length of a virtual
batch are never read by the kernel, so clamping their indices to the table's last column changes nothing else.
Same signature, outputs and dtypes as 0.8.3's `make_local_attention_virtual_batches`; imported only on 0.8.3.
"""

from types import ModuleType
from typing import Any

import numpy as np
import torch

TARGET_MODULE = "vllm.v1.attention.backends.flash_attn"
TARGET_NAME = "make_local_attention_virtual_batches"
_MARK = "_llamaops_bounds_safe"


def make_local_attention_virtual_batches(
    attn_chunk_size: int,
    query_start_loc_np: np.ndarray,
    seq_lens_np: np.ndarray,
    block_table: torch.Tensor,
    page_size: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, torch.Tensor]:
    """Split each request's new tokens at attention-chunk boundaries into virtual batches.

    Returns (query lengths, cumulative query starts, key lengths, block table) of the virtual batches, in request
    order. A virtual batch attends to the keys of its own chunk up to its last query token.
    """
    chunk = attn_chunk_size
    if page_size <= 0 or chunk % page_size != 0:
        raise ValueError(f"attn_chunk_size {chunk} is not divisible by page_size {page_size}")
    q_lens = query_start_loc_np[1:] - query_start_loc_np[:-1]
    computed = seq_lens_np - q_lens  # tokens already in the KV cache before this step

    # A request's new tokens span chunks first..last, one virtual batch each. A request with no new token still
    # gets one (empty) virtual batch on the chunk of its last key, as in 0.8.3.
    last = (seq_lens_np - 1) // chunk
    first = np.minimum(computed // chunk, last)
    per_request = (last - first + 1).astype(np.int64)
    total = int(per_request.sum())
    request = np.repeat(np.arange(len(seq_lens_np)), per_request)
    starts = np.cumsum(per_request) - per_request
    chunk_index = np.repeat(first, per_request) + (np.arange(total) - np.repeat(starts, per_request))
    chunk_start = chunk_index * chunk

    chunk_end = np.minimum(chunk_start + chunk, seq_lens_np[request])
    q_dtype = np.promote_types(q_lens.dtype, np.int32)
    seqlens_q_local = (chunk_end - np.maximum(chunk_start, computed[request])).astype(q_dtype)
    cu_seqlens_q_local = np.pad(np.cumsum(seqlens_q_local), (1, 0)).astype(np.int32)
    seqlens_k_local = (chunk_end - chunk_start).astype(np.int32)

    pages = chunk // page_size
    block_indices = (chunk_start // page_size)[:, None] + np.arange(pages)[None, :]
    # The fix: stay inside the table. Only pages past the chunk's keys are clamped, and those are never read.
    np.minimum(block_indices, block_table.shape[1] - 1, out=block_indices)
    rows = torch.from_numpy(np.repeat(request, pages)).to(block_table.device)
    cols = torch.from_numpy(block_indices.reshape(-1)).to(block_table.device)
    block_table_local = block_table[rows, cols].view(total, -1)
    return seqlens_q_local, cu_seqlens_q_local, seqlens_k_local, block_table_local


setattr(make_local_attention_virtual_batches, _MARK, True)


def install(module: ModuleType) -> str | None:
    """Replace the function in the backend module. 0.8.3's metadata builder calls it through the module's globals
    (there is no other reference to it in that release), so the module attribute is where it is looked up."""
    current: Any = getattr(module, TARGET_NAME, None)
    if current is None:
        return f"{module.__name__}.{TARGET_NAME} not present"
    if not getattr(current, _MARK, False):
        setattr(module, TARGET_NAME, make_local_attention_virtual_batches)
    return None


def apply() -> str | None:
    import importlib

    try:
        module = importlib.import_module(TARGET_MODULE)
    except ImportError as exc:
        return f"{TARGET_MODULE} not importable ({exc})"
    return install(module)
