import json
import re

import pytest

from llamaops_sandbox import crashloop
from llamaops_sandbox.layout import find_repo

REPO_ROOT = find_repo()

CAPTURE = """=== embedding_oov: exit=1
stdout:
stderr first: line A1
line A2
stderr last: line Z1
line Z2
=== clamped: exit=0
stdout: no error
stderr first:
stderr last:
"""


def test_failed_cases_become_first_and_last_stderr_lines():
    captures = crashloop.parse_captures(CAPTURE)
    assert list(captures) == ["embedding_oov"]
    assert captures["embedding_oov"].exit_code == 1
    assert captures["embedding_oov"].message == "line A1\nline A2\nline Z1\nline Z2"


def test_real_h100_capture_yields_the_device_assert_messages():
    text = (REPO_ROOT / "e2e" / "fixtures" / "cuda" / "h100-torch2.11-cu130.txt").read_text()
    captures = crashloop.parse_captures(text)
    assert set(captures) == {"embedding_oov", "block_table_gather"}
    assert "Assertion `srcIndex < srcSelectDimSize` failed." in captures["embedding_oov"].message
    assert '"index out of bounds"` failed.' in captures["block_table_gather"].message
    assert all(len(c.message.encode()) <= crashloop.MAX_MESSAGE_BYTES for c in captures.values())


def test_rendered_stage_holds_each_message_as_a_go_string_literal():
    template = (REPO_ROOT / "e2e" / "kwok" / "pod-crash-loop.yaml").read_text()
    captures = crashloop.parse_captures(CAPTURE)
    rendered = crashloop.render_crash_stage(template, captures)
    assert crashloop.PLACEHOLDER not in rendered
    line = next(x for x in rendered.splitlines() if "$messages := dict" in x)
    literals = re.findall(r'"(?:[^"\\]|\\.)*"', line)
    assert [json.loads(s) for s in literals] == ["embedding_oov", "line A1\nline A2\nline Z1\nline Z2"]


def test_template_without_placeholder_is_refused():
    with pytest.raises(ValueError, match="no __FIXTURE_MESSAGES__"):
        crashloop.render_crash_stage("kind: Stage\n", {})
