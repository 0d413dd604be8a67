"""The operator bounds glibc's malloc arenas unless the environment already does (cli.malloc)."""

from __future__ import annotations

import ctypes.util

import pytest

from llama_operator.cli import malloc


def test_an_explicit_environment_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert malloc.limit_arenas() is False


def test_without_glibc_nothing_is_done(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.setattr(ctypes.util, "find_library", lambda _name: None)
    assert malloc.limit_arenas() is False


def test_glibc_accepts_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    if ctypes.util.find_library("c") is None:
        pytest.skip("no C library found by ctypes on this platform")
    assert malloc.limit_arenas() is True
