"""vLLM 0.8.3's own `make_local_attention_virtual_batches`, taken from the released wheel at test time.

The wheel is downloaded once (pip download --no-deps) into the cache directory $LLAMAOPS_CACHE, never into the
checkout; the two source files needed are kept there, the wheel itself is dropped. Only the original function (and
the `cdiv` it calls, from the same release) is compiled, from the release's own source text, so none of 0.8.3's
compiled parts or imports are needed: torch and numpy are enough.
"""

import ast
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

VERSION = "0.8.3"
BACKEND = "vllm/v1/attention/backends/flash_attn.py"
UTILS = "vllm/utils.py"
FUNCTION = "make_local_attention_virtual_batches"


def cache_dir() -> Path:
    # Same default as scripts/lib.sh.
    if "LLAMAOPS_CACHE" in os.environ:
        return Path(os.environ["LLAMAOPS_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "llama-operator"


def source_dir() -> Path:
    """Directory holding the release's flash_attn.py and utils.py (plus a list of every module in the wheel that
    names the function); downloads the wheel when missing."""
    target = cache_dir() / f"vllm-{VERSION}-src"
    if (target / "complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
             f"vllm=={VERSION}", "-d", tmp],
            check=True,
        )  # fmt: skip
        (wheel,) = Path(tmp).glob(f"vllm-{VERSION}-*.whl")
        out = Path(tmp) / "src"
        out.mkdir()
        with zipfile.ZipFile(wheel) as zf:
            (out / "flash_attn.py").write_bytes(zf.read(BACKEND))
            (out / "utils.py").write_bytes(zf.read(UTILS))
            naming = [n for n in zf.namelist() if n.endswith(".py") and FUNCTION.encode() in zf.read(n)]
        (out / "modules_naming_function.txt").write_text("\n".join(naming) + "\n")
        (out / "complete").write_text(wheel.name + "\n")
        if not (target / "complete").exists():
            out.rename(target)
    return target


def backend_source() -> str:
    return (source_dir() / "flash_attn.py").read_text()


def modules_naming_function() -> list[str]:
    return (source_dir() / "modules_naming_function.txt").read_text().split()


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
    exec(compile(_functions((src / "utils.py").read_text(), {"cdiv"}), str(src / "utils.py"), "exec"), namespace)
    backend = src / "flash_attn.py"
    exec(compile(_functions(backend.read_text(), {FUNCTION}), str(backend), "exec"), namespace)
    return namespace[FUNCTION]  # type: ignore[no-any-return]


def load_ours() -> Callable[..., Any]:
    from llamaops_vllm.patches.local_attention_083 import make_local_attention_virtual_batches

    return make_local_attention_virtual_batches
