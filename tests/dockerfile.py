"""The one Dockerfile reader of the tests (the operator image's checks in tests/unit, the vLLM image's in tests/unit
and tests/engine). Plain Python, so the engine tier's own venv imports it too; it reads what the checks need, not
the whole grammar (no heredocs, no parser directives)."""

from __future__ import annotations

import re

Instruction = tuple[str, str]  # (INSTRUCTION upper-cased, its argument text)


def parse(text: str) -> tuple[dict[str, str], list[Instruction]]:
    """Return the ARG defaults and the (INSTRUCTION, argument) pairs, with line continuations joined."""
    args: dict[str, str] = {}
    instructions: list[Instruction] = []
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


def stage_starts(instructions: list[Instruction]) -> list[int]:
    """The indexes of the FROM instructions: where each build stage begins."""
    return [i for i, (ins, _) in enumerate(instructions) if ins == "FROM"]
