"""Messages for the KWOK crash-loop stage, taken from real CUDA failure captures (pure).

A capture file (e2e/fixtures/cuda/*.txt) holds cases like::

    === embedding_oov: exit=1
    stdout: ...
    stderr first: <first lines of stderr>
    stderr last: <last lines of stderr>

A crashed container's termination message is the tail of its output (terminationMessagePolicy
FallbackToLogsOnError), so a case's message is its first and last stderr lines, as captured.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

CASE_HEADER = re.compile(r"^=== (?P<name>[A-Za-z0-9_.-]+): exit=(?P<exit>-?\d+)$")
# The kubelet caps a termination message at 4096 bytes; keep under it.
MAX_MESSAGE_BYTES = 4096
PLACEHOLDER = "__FIXTURE_MESSAGES__"


@dataclass(frozen=True)
class Capture:
    name: str
    exit_code: int
    message: str


def parse_captures(text: str) -> dict[str, Capture]:
    """Cases of a capture file that failed (exit code != 0), by name."""
    cases: dict[str, tuple[int, dict[str, list[str]]]] = {}
    current: dict[str, list[str]] | None = None
    field = ""
    for line in text.splitlines():
        if header := CASE_HEADER.match(line):
            current = {}
            cases[header["name"]] = (int(header["exit"]), current)
            field = ""
            continue
        if current is None:
            continue
        for key in ("stdout", "stderr first", "stderr last"):
            if line.startswith(key + ":"):
                field = key
                current[field] = [line[len(key) + 1 :].strip()]
                break
        else:
            if field:
                current[field].append(line)
    captures = {}
    for name, (exit_code, fields) in cases.items():
        lines = [line for key in ("stderr first", "stderr last") for line in fields.get(key, []) if line]
        if exit_code != 0 and lines:
            message = "\n".join(lines).encode()[-MAX_MESSAGE_BYTES:].decode(errors="ignore")
            captures[name] = Capture(name, exit_code, message)
    return captures


def render_crash_stage(template: str, captures: dict[str, Capture]) -> str:
    """The crash-loop stage file with the capture messages in its template's `dict` (Go template literals)."""
    if PLACEHOLDER not in template:
        raise ValueError(f"crash stage template has no {PLACEHOLDER}")
    # A JSON string (ASCII-escaped) is also a valid Go template string literal.
    args = " ".join(f"{json.dumps(name)} {json.dumps(c.message)}" for name, c in sorted(captures.items()))
    return template.replace(PLACEHOLDER, args)
