"""The operator image: multi-stage, pinned base, non-root user, the console script as entrypoint."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def parse(text: str) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Return the ARG defaults and the (INSTRUCTION, argument) pairs, with line continuations joined."""
    args: dict[str, str] = {}
    instructions: list[tuple[str, str]] = []
    for raw in re.sub(r"\\\n", " ", text).splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "ARG" and "=" in rest:
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip()
        instructions.append((instruction, rest.strip()))
    return args, instructions


def problems(text: str) -> list[str]:
    """Everything wrong with a Dockerfile for the operator image; empty when it is fine."""
    args, instructions = parse(text)
    found: list[str] = []
    stages: set[str] = set()
    froms = [i for i, (ins, _) in enumerate(instructions) if ins == "FROM"]
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
