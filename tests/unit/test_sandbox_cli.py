"""`llamaops-sandbox`: its own command, with every action and flag the operator's former sandbox subcommand had."""

from __future__ import annotations

from pathlib import Path

import pytest

from llamaops_sandbox import cli, layout


def test_every_action_and_flag() -> None:
    parser = cli.build_parser()
    up = parser.parse_args(["up", "--shape", "nodes.yaml", "--real-node"])
    assert (up.action, up.shape, up.real_node) == ("up", Path("nodes.yaml"), True)
    assert parser.parse_args(["up"]).shape is None
    for action in ("down", "status", "env"):
        assert parser.parse_args([action]).action == action
    with pytest.raises(SystemExit):
        parser.parse_args([])


def test_status_without_a_sandbox_says_not_running(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    monkeypatch.setenv("LLAMAOPS_CACHE", str(tmp_path))
    assert cli.main(["status"]) == 3
    assert capsys.readouterr().out == "sandbox: not running\n"


def test_no_checkout_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    layout.find_repo.cache_clear()
    monkeypatch.setenv("LLAMAOPS_REPO", str(tmp_path))
    monkeypatch.setenv("LLAMAOPS_CACHE", str(tmp_path))
    try:
        assert cli.main(["env"]) == 1
    finally:
        layout.find_repo.cache_clear()
    assert "is not a llama-operator checkout" in capsys.readouterr().err
