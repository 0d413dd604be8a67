"""Image rewrites for private registries (pure): what the operator renders, pulled from a mirror instead.

An air-gapped cluster cannot pull ``ghcr.io/llamaops/vllm`` or ``docker.io/vllm/vllm-openai``; its registry holds
the same images (or CPU builds of them) under names of its own. A rule ``FROM=TO`` replaces the repository prefix
FROM with TO and keeps the rest of the reference (path below FROM, tag, digest):

    ghcr.io/llamaops/vllm=127.0.0.1:5000/llamaops/vllm-cpu
    ghcr.io/llamaops/vllm:0.8.3-llamaops  ->  127.0.0.1:5000/llamaops/vllm-cpu:0.8.3-llamaops

FROM matches on whole path segments only (``ghcr.io/llamaops/vllm`` does not rewrite ``ghcr.io/llamaops/vllm-foo``),
the longest matching FROM wins, and an image no rule matches is left as it is. Docker Hub's short names match as
the container runtime reads them (``vllm/vllm-openai`` is ``docker.io/vllm/vllm-openai``, ``python`` is
``docker.io/library/python``), in images and in rules alike. The rules apply to every image the operator renders:
the default images of knowledge/data/planner.yaml and spec.engine.image overrides alike (a user's image on
docker.io has to come from the mirror as well).

A rule set must be idempotent: status records the rewritten image (what actually runs), a rollback renders the
image of status.lastKnownGood verbatim, and the rules are applied again on the way out. So no rule's TO may lie
under, or above, any rule's FROM (``docker.io=docker.io/mirror`` would rewrite its own output again at a rollback).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

ENV = "LLAMAOPS_IMAGE_REWRITES"
DOCKER_HUB = "docker.io"
# A repository name (registry host included) is at most 255 characters (the distribution spec's limit).
MAX_LENGTH = 255
# A registry host with a port, e.g. 127.0.0.1:5000 or registry.local:5000: a colon that is not a tag.
_HOST_PORT = re.compile(r"^(localhost|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+|\[[0-9A-Fa-f:.]+\]):[0-9]+$")
# Characters of a reference's repository part: lowercase path components, a host with a port.
_REPOSITORY = re.compile(r"^[A-Za-z0-9._:\[\]-]+(/[a-z0-9._-]+)*$")


class ImageRewriteError(ValueError):
    """A malformed rule or rule set; the message names the rule and what is wrong with it."""


@dataclass(frozen=True, slots=True)
class ImageRewrite:
    """One rule: repositories at or under ``source`` move to ``target``."""

    source: str
    target: str

    def __str__(self) -> str:
        return f"{self.source}={self.target}"


def split_reference(image: str) -> tuple[str, str]:
    """(repository, suffix): the suffix is what follows the repository (``:tag``, ``@digest``, both, or "").

    A colon is a tag separator only after the last slash; before it, it is a registry's port."""
    name, at, digest = image.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon:] + at + digest
    return name, at + digest


def canonical(repository: str, *, prefix: bool = False) -> str:
    """The repository as the container runtime resolves it: Docker Hub's short names get their registry (and
    ``library/`` for official images). A first segment is a registry host when it has a dot or a port or is
    localhost and more segments follow; a rule's FROM or TO (``prefix``) may also be a registry host alone."""
    first, slash, rest = repository.partition("/")
    if (slash or prefix) and ("." in first or ":" in first or first == "localhost"):
        return DOCKER_HUB + slash + rest if first == "index.docker.io" else repository
    return f"{DOCKER_HUB}/{repository}" if slash else f"{DOCKER_HUB}/library/{repository}"


def _under(repository: str, prefix: str) -> bool:
    """Whether ``repository`` is ``prefix`` or lies below it, on a path-segment boundary."""
    return repository == prefix or repository.startswith(prefix + "/")


def _repository(text: str, side: str, rule: str) -> str:
    if not text:
        raise ImageRewriteError(f"image rewrite {rule!r}: {side} is empty; expected FROM=TO")
    if len(text) > MAX_LENGTH:
        raise ImageRewriteError(f"image rewrite {rule!r}: {side} is longer than {MAX_LENGTH} characters")
    if "@" in text:
        raise ImageRewriteError(f"image rewrite {rule!r}: {side} {text!r} carries a digest; give a repository only")
    if ":" in text.rpartition("/")[2] and not ("/" not in text and _HOST_PORT.match(text)):
        raise ImageRewriteError(
            f"image rewrite {rule!r}: {side} {text!r} carries a tag; give a repository only (the image's own tag "
            "or digest is kept)"
        )
    if not _REPOSITORY.match(text) or any(not part for part in text.split("/")):
        raise ImageRewriteError(
            f"image rewrite {rule!r}: {side} {text!r} is not an image repository (e.g. registry.local:5000/team/vllm)"
        )
    return text


def parse_rule(text: str) -> ImageRewrite:
    """One ``FROM=TO`` rule, checked: both sides non-empty repositories, neither with a tag or digest."""
    source, equals, target = text.strip().partition("=")
    if not equals:
        raise ImageRewriteError(f"image rewrite {text!r} has no '='; expected FROM=TO")
    return ImageRewrite(_repository(source.strip(), "FROM", text), _repository(target.strip(), "TO", text))


def _rendered(target: str) -> set[str]:
    """Where a rule's output lands, as the runtime reads it: TO itself, and the parent of TO/<path> (the two
    differ for a short Docker Hub name: ``mirror`` is docker.io/library/mirror, ``mirror/x`` docker.io/mirror/x)."""
    return {canonical(target, prefix=True), canonical(f"{target}/x").rpartition("/")[0]}


def check_rules(rules: Iterable[ImageRewrite]) -> tuple[ImageRewrite, ...]:
    """The rules as a set: one TO per FROM, and no rule rewriting another's output (the set is idempotent)."""
    out = tuple(rules)
    sources: dict[str, ImageRewrite] = {}
    for rule in out:
        earlier = sources.setdefault(canonical(rule.source, prefix=True), rule)
        if earlier.target != rule.target:
            raise ImageRewriteError(f"image rewrites {earlier} and {rule} both rewrite {rule.source!r}")
    for rule in out:
        for other in out:
            source = canonical(other.source, prefix=True)
            if any(_under(target, source) or _under(source, target) for target in _rendered(rule.target)):
                raise ImageRewriteError(
                    f"image rewrite {rule}: what it renders would be rewritten again by {other}; a rule's TO must "
                    "lie outside every FROM (status records the rewritten image, and a rollback renders it again)"
                )
    return tuple(dict.fromkeys(out))


def parse_rules(texts: Iterable[str]) -> tuple[ImageRewrite, ...]:
    """Rules from ``FROM=TO`` strings (the command line), checked one by one and as a set."""
    return check_rules(parse_rule(text) for text in texts)


def parse_env(value: str) -> tuple[ImageRewrite, ...]:
    """Rules from a comma-separated ``FROM=TO,FROM=TO`` list (the LLAMAOPS_IMAGE_REWRITES fallback)."""
    items = [item for item in (part.strip() for part in value.split(",")) if item]
    return parse_rules(items)


def rewrite_image(image: str, rules: Iterable[ImageRewrite]) -> str:
    """``image`` with the longest matching rule applied to its repository part; unchanged when none matches."""
    repository, suffix = split_reference(image)
    full = canonical(repository)
    best: tuple[str, ImageRewrite] | None = None
    for rule in rules:
        source = canonical(rule.source, prefix=True)
        if _under(full, source) and (best is None or len(source) > len(best[0])):
            best = (source, rule)
    if best is None:
        return image
    source, rule = best
    return rule.target + full[len(source) :] + suffix


__all__ = [
    "ENV",
    "ImageRewrite",
    "ImageRewriteError",
    "canonical",
    "check_rules",
    "parse_env",
    "parse_rule",
    "parse_rules",
    "rewrite_image",
    "split_reference",
]
