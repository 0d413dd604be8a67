"""vLLM 0.8.3's own `make_local_attention_virtual_batches`, taken from the released wheel at test time.

The release's Python sources come from its own wheel, downloaded once into $LLAMAOPS_CACHE (tests.engine.vllm_release),
never into the checkout. Only the original function (and the `cdiv` it calls, from the same release) is compiled,
from the release's own source text, so none of 0.8.3's compiled parts or imports are needed: torch and numpy are
enough.
"""

import ast
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.engine.vllm_release import python_source

VERSION = "0.8.3"
BACKEND = "vllm/v1/attention/backends/flash_attn.py"
UTILS = "vllm/utils.py"
FUNCTION = "make_local_attention_virtual_batches"


def source_dir() -> Path:
    """The release's Python sources, from its own wheel (tests.engine.vllm_release)."""
    return python_source(VERSION)


def backend_source() -> str:
    return (source_dir() / BACKEND).read_text()


def modules_naming_function() -> list[str]:
    """Every module of the release whose source names the function (paths as in the wheel)."""
    root = source_dir()
    named = (p for p in (root / "vllm").rglob("*.py") if FUNCTION in p.read_text(errors="replace"))
    return sorted(p.relative_to(root).as_posix() for p in named)


def _functions(source: str, names: set[str]) -> ast.Module:
    tree = ast.parse(source)
    body: list[ast.stmt] = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in names]
    assert {n.name for n in body if isinstance(n, ast.FunctionDef)} == names
    return ast.Module(body=body, type_ignores=[])


def load_original() -> Callable[..., Any]:
    import numpy as np
    import torch

    src = source_dir()
    namespace: dict[str, Any] = {"np": np, "torch": torch}
    utils = src / UTILS
    exec(compile(_functions(utils.read_text(), {"cdiv"}), str(utils), "exec"), namespace)
    backend = src / BACKEND
    exec(compile(_functions(backend.read_text(), {FUNCTION}), str(backend), "exec"), namespace)
    return namespace[FUNCTION]  # type: ignore[no-any-return]


def load_ours() -> Callable[..., Any]:
    from llamaops_vllm.patches.local_attention_083 import make_local_attention_virtual_batches

    return make_local_attention_virtual_batches
