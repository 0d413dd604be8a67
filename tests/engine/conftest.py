"""Engine tier: real vLLM (CPU build) in its own venv (images/vllm/scripts/engine-venv.sh), never the project's."""

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

if importlib.util.find_spec("vllm") is None or importlib.util.find_spec("llamaops_vllm") is None:
    # Fail, not skip: a tier that silently collects nothing proves nothing.
    raise pytest.UsageError(
        "tests/engine runs in the engine venv: "
        '"$(images/vllm/scripts/engine-venv.sh)/bin/python" -m pytest tests/engine'
    )

from tests.engine.server import Server
from tests.engine.tiny_llama4 import write_tiny_llama4


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama4(tmp_path_factory.mktemp("tiny-llama4"))


@pytest.fixture(scope="module")
def patched_server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("patched")
    server = Server(
        tiny_model, tmp / "vllm.log", plugin=True, env={"LLAMAOPS_TERMINATION_MESSAGE_PATH": str(tmp / "term")}
    )
    yield server
    server.stop()
