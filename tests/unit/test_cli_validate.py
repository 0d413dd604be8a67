"""`llama-operator validate`: table and JSON output, exit 0/1/2, and no traceback on bad input."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from llama_operator.cli import main
from llama_operator.cli.validate import as_table, check

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
VALID = EXAMPLES / "llama4-scout.yaml"
INVALID = EXAMPLES / "invalid-llama4-vllm083.yaml"


def test_valid_file_exits_0_with_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(VALID)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("VALID    serving/llama4-scout")
    assert "memory_plan" in out
    assert "1 valid, 0 invalid" in out


def test_invalid_file_exits_1_and_names_the_finding(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(INVALID)]) == 1
    out = capsys.readouterr().out
    assert "INVALID" in out
    assert "chunked_local_attention_block_table_overrun" in out
    assert "fix:" in out


def test_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--output", "json", str(VALID), str(INVALID)]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["summary"] == {"resources": 2, "valid": 1, "invalid": 1, "unreadable": 0}
    scout, invalid = data["resources"]
    assert scout["source"].endswith("llama4-scout.yaml#1")
    assert scout["valid"] is True
    assert scout["plan"]["maxModelLenThatFits"] > 1048576
    assert scout["effective"]["tensorParallelSize"] == 8
    assert invalid["findings"][0]["code"] == "chunked_local_attention_block_table_overrun"


def test_directory_and_multi_document_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", "-q", str(EXAMPLES)]) == 1  # the folder holds the refused examples too
    assert "INFO" not in capsys.readouterr().out
    text = VALID.read_text() + "\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: serving}\n---\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    assert main(["validate", "-"]) == 0
    out = capsys.readouterr().out
    assert "SKIPPED  v1/Namespace  (-#2)" in out


@pytest.mark.parametrize(
    ("content", "status"),
    [
        ("apiVersion: llamaops.dev/v1alpha1\nkind: LlamaDeployment\nspec: [unclosed\n", 2),
        ("\x00\x01binary", 2),
        ("- just\n- a list\n", 1),
        ("apiVersion: llamaops.dev/v1alpha1\nkind: LlamaDeployment\nspec: 7\n", 1),
        ("? [unhashable, key]\n: value\n", 2),
        ("", 0),
    ],
)
def test_bad_input_exit_codes(tmp_path: Path, content: str, status: int) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content, encoding="utf-8")
    assert check([str(path)]).status == status


def test_missing_file_and_undecodable_bytes_exit_2(tmp_path: Path) -> None:
    assert check([str(tmp_path / "missing.yaml")]).status == 2
    blob = tmp_path / "blob.yaml"
    blob.write_bytes(b"\xff\xfe\xfa")
    report = check([str(blob)])
    assert report.status == 2
    assert "blob.yaml" in as_table(report)


@pytest.mark.parametrize(
    ("stdin", "status"),
    [
        ("kind: LlamaDeployment\napiVersion: llamaops.dev/v1alpha1\nspec: {model: {name: [1]}}\n", 1),
        ("{{{{", 2),
        ("[" * 5000, 2),
        ('a: !!int ""\n', 2),
        ("a: !!bool maybe\n", 2),
        ("a: !!timestamp now\n", 2),
    ],
)
def test_console_script_never_prints_a_traceback(stdin: str, status: int) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "llama_operator", "validate", "-"],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == status, run.stderr
    assert "Traceback" not in run.stdout + run.stderr


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('spec: !!int ""\n', "IndexError: string index out of range"),
        ("spec: !!bool maybe\n", "KeyError: 'maybe'"),
        ("spec: !!timestamp now\n", "AttributeError: 'NoneType' object has no attribute 'groupdict'"),
    ],
)
def test_a_value_its_explicit_tag_does_not_fit_is_unreadable_input(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "tagged.yaml"
    path.write_text(content, encoding="utf-8")
    report = check([str(path)])
    assert report.status == 2
    assert report.unreadable == [
        {"source": str(path), "error": f"not valid YAML: a value does not fit its tag ({problem})"}
    ]
