"""The vLLM known-issue registry entry, with its version range and symptom patterns compiled once.

An entry says how well it is known (``evidence``) and, where the released sources can show it, how to find the
hazard and its fix in them (``probe``: read by the engine tier's tests/engine/test_issue_ranges.py, which checks
that the hazard is present exactly in the releases ``affected`` names).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

# How an entry is known, strongest first: run on a GPU, run on the CPU (vLLM's own code, here), found in the
# released sources by a probe, or only read in the upstream issue.
EVIDENCE_LEVELS = ("reproduced_gpu", "reproduced_cpu", "source_probe", "cited")


@dataclass(frozen=True, slots=True)
class SourceProbe:
    """Where the released sources show the hazard: in a release, the hazard is present when ``bug`` matches (if
    given) and ``fix`` does not (if given), searched in the files of ``files`` that the release has."""

    files: tuple[str, ...]
    bug: re.Pattern[str] | None
    fix: re.Pattern[str] | None
    releases: tuple[str, ...]

    def hazard_in(self, source: str) -> bool:
        """Whether a release whose listed files read ``source`` (concatenated) carries the hazard."""
        bug_present = self.bug is None or self.bug.search(source) is not None
        fixed = self.fix is not None and self.fix.search(source) is not None
        return bug_present and not fixed


@dataclass(frozen=True, slots=True)
class KnownIssue:
    """One upstream vLLM hazard: when it applies, how it shows, what fixes it."""

    id: str
    title: str
    issue_links: tuple[str, ...]
    fix_links: tuple[str, ...]
    affected: SpecifierSet
    architectures: frozenset[str]
    condition: str
    params: Mapping[str, Any]
    severity: str
    # vLLM versions in which the patched image's plugin removes the hazard (empty set: no patch).
    patched_versions: SpecifierSet | None
    summary: str
    symptoms: tuple[re.Pattern[str], ...]
    remedies: tuple[str, ...]
    verified: str
    evidence: str = "cited"
    probe: SourceProbe | None = None
    _version_cache: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    def affects_version(self, version: str) -> bool:
        """Whether ``version`` is in the affected range; an unparsable version is treated as affected."""
        cached = self._version_cache.get(version)
        if cached is None:
            parsed = parse_version(version)
            cached = True if parsed is None else self.affected.contains(parsed, prereleases=True)
            self._version_cache[version] = cached
        return cached

    def patched_in(self, version: str) -> bool:
        """Whether the patched image for ``version`` carries a plugin patch that removes this hazard."""
        if self.patched_versions is None:
            return False
        parsed = parse_version(version)
        return parsed is not None and self.patched_versions.contains(parsed, prereleases=True)

    def affects_architecture(self, architecture: str) -> bool:
        return not self.architectures or architecture in self.architectures

    def matches_symptom(self, text: str) -> bool:
        """Whether crash output ``text`` shows one of this issue's symptoms (for the crash classifier)."""
        return any(pattern.search(text) for pattern in self.symptoms)


@lru_cache(maxsize=256)
def parse_version(version: str) -> Version | None:
    try:
        return Version(version)
    except InvalidVersion:
        return None


def _pattern(issue_id: str, name: str, value: Any) -> re.Pattern[str] | None:
    if value is None:
        return None
    try:
        return re.compile(str(value))
    except re.error as error:
        raise ValueError(f"known issue {issue_id!r}: probe {name} is not a regular expression: {error}") from error


def _probe(issue_id: str, data: Any, affected: SpecifierSet) -> SourceProbe | None:
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise ValueError(f"known issue {issue_id!r}: probe must be a mapping")
    files = data.get("files")
    releases = data.get("releases")
    if not isinstance(files, list) or not files or not all(isinstance(f, str) and f for f in files):
        raise ValueError(f"known issue {issue_id!r}: probe files must be a non-empty list of paths in the wheel")
    if not isinstance(releases, list) or not releases:
        raise ValueError(f"known issue {issue_id!r}: probe releases must be a non-empty list of vLLM versions")
    versions = [parse_version(str(release)) for release in releases]
    if any(version is None for version in versions):
        raise ValueError(f"known issue {issue_id!r}: probe releases must be vLLM versions, got {releases!r}")
    probe = SourceProbe(
        files=tuple(files),
        bug=_pattern(issue_id, "bug", data.get("bug")),
        fix=_pattern(issue_id, "fix", data.get("fix")),
        releases=tuple(str(release) for release in releases),
    )
    if probe.bug is None and probe.fix is None:
        raise ValueError(f"known issue {issue_id!r}: probe needs a bug or a fix pattern")
    # A probe proves the range only if it reads at least one release the registry calls affected.
    if not any(affected.contains(version, prereleases=True) for version in versions if version is not None):
        raise ValueError(f"known issue {issue_id!r}: probe releases name no release in the affected range")
    return probe


def known_issue_from_dict(data: Mapping[str, Any]) -> KnownIssue:
    links = data.get("links") or {}
    try:
        affected = SpecifierSet(str(data.get("affected", "")))
        patched = str(data.get("patched_versions", ""))
        patched_versions = SpecifierSet(patched) if patched else None
    except InvalidSpecifier as error:
        raise ValueError(f"known issue {data.get('id')!r}: bad version specifier: {error}") from error
    severity = str(data["severity"])
    if severity not in ("error", "warning", "info"):
        raise ValueError(f"known issue {data['id']!r}: severity must be error, warning or info")
    evidence = str(data.get("evidence", ""))
    if evidence not in EVIDENCE_LEVELS:
        raise ValueError(f"known issue {data['id']!r}: evidence must be one of {', '.join(EVIDENCE_LEVELS)}")
    probe = _probe(str(data["id"]), data.get("probe"), affected)
    if evidence == "source_probe" and probe is None:
        raise ValueError(f"known issue {data['id']!r}: evidence source_probe needs a probe")
    return KnownIssue(
        id=str(data["id"]),
        title=str(data["title"]),
        issue_links=tuple(links.get("issues", ())),
        fix_links=tuple(links.get("fixes", ())),
        affected=affected,
        architectures=frozenset(data.get("architectures") or ()),
        condition=str(data["condition"]),
        params=dict(data.get("params") or {}),
        severity=severity,
        patched_versions=patched_versions,
        summary=" ".join(str(data.get("summary", "")).split()),
        symptoms=tuple(re.compile(pattern, re.IGNORECASE) for pattern in data.get("symptoms", ())),
        remedies=tuple(str(remedy) for remedy in data.get("remedies", ())),
        verified=" ".join(str(data.get("verified", "")).split()),
        evidence=evidence,
        probe=probe,
    )
