"""Bound glibc's malloc arenas for the operator process.

kopf runs sync handlers on a thread pool, and every thread that allocates while another holds an arena gets an
arena of its own (up to 8 per core), each keeping freed memory for reuse. The operator's live Python objects at
1,000 LlamaDeployments are well under 100 MB (tracemalloc, benchmarks/scale.py --memory), yet its RSS passed
500 MB: freed JSON buffers spread over many arenas. Two arenas cost nothing measurable here (handlers wait on the
API server, not on malloc). Setting MALLOC_ARENA_MAX in the environment does the same and wins over this.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_ARENA_MAX = -8  # glibc's malloc.h
ARENAS = 2


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Call mallopt(M_ARENA_MAX, arenas) unless MALLOC_ARENA_MAX is set; False where libc is not glibc."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False  # musl and others have no mallopt
    return bool(mallopt(M_ARENA_MAX, arenas))
