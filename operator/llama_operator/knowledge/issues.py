"""The vLLM known-issue registry entry, with its version range and symptom patterns compiled once."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version


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
    )
