"""Pinned versions, read from the Go module files that pin them, so each is stated once (scripts/sandbox-build.sh
reads the same files with `go list -m`)."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import NamedTuple


class Pin(NamedTuple):
    """A module required by the go.mod in ``directory`` (relative to the checkout)."""

    directory: str
    module: str


KUBERNETES = Pin("e2e", "k8s.io/kubernetes")
KWOK = Pin("e2e/tools/kwok", "sigs.k8s.io/kwok")
LWS = Pin("e2e/tools/lws", "sigs.k8s.io/lws")
KEDA = Pin("e2e/tools/keda", "github.com/kedacore/keda/v2")


def version(repo: Path, pin: Pin) -> str:
    return _required(repo / pin.directory / "go.mod", pin.module)


@functools.cache
def _required(gomod: Path, module: str) -> str:
    # A `require MODULE vX` line or a `MODULE vX` line of a require block; replace lines (`MODULE => ...`) never
    # match, since a version must follow the module path directly.
    pattern = rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)"
    found = re.search(pattern, gomod.read_text(), re.MULTILINE)
    if found is None:
        raise ValueError(f"{gomod} requires no {module}")
    return found.group(1)
