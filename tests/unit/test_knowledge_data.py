"""knowledge/data/*.yaml is read with PyYAML's C loader where the wheel has it (knowledge/catalog.py): both
loaders read every file the same, so the catalog does not depend on which one read it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llama_operator.knowledge import catalog

DATA = Path(catalog.__file__).resolve().parent / "data"
FILES = sorted(DATA.glob("*.yaml"))


def test_there_are_data_files() -> None:
    assert {path.name for path in FILES} >= {"models.yaml", "gpus.yaml", "known_issues.yaml", "planner.yaml"}


@pytest.mark.skipif(not hasattr(yaml, "CSafeLoader"), reason="this PyYAML has no C loader")
@pytest.mark.parametrize("path", FILES, ids=[path.name for path in FILES])
def test_both_loaders_read_each_data_file_alike(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    pure = yaml.safe_load(text)
    assert repr(yaml.load(text, Loader=yaml.CSafeLoader)) == repr(pure)
    assert repr(catalog._read(path.name)) == repr(pure)
