"""The engine venv (vLLM's CPU build), for tiers that run in the project's venv but need vLLM in a child process."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def engine_python() -> Path:
    """Its python, after images/vllm/scripts/engine-venv.sh has built it (once; cheap when warm)."""
    out = subprocess.run(
        ["bash", str(ROOT / "images" / "vllm" / "scripts" / "engine-venv.sh")],
        capture_output=True,
        text=True,
        check=True,
        timeout=3600,
    ).stdout
    return Path(out.strip().splitlines()[-1]) / "bin" / "python"
