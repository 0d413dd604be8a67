"""Version ranges proven, not typed: every known issue with a ``probe`` (known_issues.yaml) is looked up in the
released sources of its boundary releases, and the hazard must be present exactly in the releases the registry's
``affected`` range contains (the last affected and first fixed release where the range ends, the last unaffected
and first affected where it starts).

Each release's Python sources come from its own wheel on PyPI (tests/engine/vllm_release.py: ``pip download``, never
installed; only the ``.py`` files and the dist-info stay in $LLAMAOPS_CACHE). The registry is read with the
operator's own loader (llama_operator.knowledge.issues, which needs only PyYAML and packaging), so the probe's
meaning is the one the unit tests pin down.

CI cost: the probes read 9 releases (0.8.3, 0.8.4, 0.10.0, 0.11.0, 0.11.1, 0.14.0, 0.15.0, 0.26.0, 0.32.0). On a
cold cache each wheel (a few hundred MB) is downloaded once, about a minute in all on a fast link; the extracted
sources take about 200 MB of cache (11-52 MB a release). Warm, the module reads a few files per case and takes
about a second. 0.8.3 and 0.32.0 are shared with tests/engine/vllm083.py and the oracle tests.
"""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

import pytest

from tests.engine.vllm_release import python_source

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "operator") not in sys.path:
    sys.path.insert(0, str(ROOT / "operator"))  # the operator is not installed in the engine venv

from llama_operator.knowledge.catalog import _read  # noqa: E402
from llama_operator.knowledge.issues import KnownIssue, known_issue_from_dict  # noqa: E402

pytestmark = pytest.mark.engine


@cache
def probed() -> dict[str, KnownIssue]:
    issues = (known_issue_from_dict(entry) for entry in _read("known_issues.yaml")["issues"])
    return {issue.id: issue for issue in issues if issue.probe is not None}


def cases() -> list[tuple[str, str]]:
    return [(issue.id, release) for issue in probed().values() if issue.probe for release in issue.probe.releases]


def source_of(release: str, files: tuple[str, ...]) -> str:
    """The listed files this release has, concatenated; a probe aimed at none of them is an error, not a pass."""
    root = python_source(release)
    present = [root / name for name in files if (root / name).is_file()]
    if not present:
        pytest.fail(f"vLLM {release} has none of {', '.join(files)}: the probe reads nothing there")
    return "\n".join(path.read_text(encoding="utf-8", errors="replace") for path in present)


@pytest.mark.parametrize(("issue_id", "release"), cases(), ids=[f"{i}@{r}" for i, r in cases()])
def test_the_hazard_is_in_exactly_the_affected_releases(issue_id: str, release: str) -> None:
    issue = probed()[issue_id]
    assert issue.probe is not None
    source = source_of(release, issue.probe.files)
    bug = issue.probe.bug.search(source) is not None if issue.probe.bug else None
    fix = issue.probe.fix.search(source) is not None if issue.probe.fix else None
    affected = issue.affects_version(release)
    assert issue.probe.hazard_in(source) == affected, (
        f"vLLM {release}: the registry says {'affected' if affected else 'not affected'} ({issue.affected or 'any'}),"
        f" the sources say bug marker {'found' if bug else 'absent' if bug is False else 'not used'},"
        f" fix marker {'found' if fix else 'absent' if fix is False else 'not used'}"
    )


def test_every_probed_release_is_a_release() -> None:
    # The wheels exist on PyPI and their dist-info names the version: a typo in the registry fails here, not as a
    # silent "file missing".
    for release in sorted({release for _, release in cases()}):
        root = python_source(release)
        assert any(root.glob(f"vllm-{release}.dist-info")), release
