"""The documents of a manifest file, as ``yaml.safe_load_all`` reads them, on PyYAML's C loader where it reads them
the same way.

`llama-operator validate` spent 93% of its time in PyYAML's pure-Python scanner and parser (issue #21). The PyYAML
wheels on PyPI carry libyaml (``yaml.CSafeLoader``, about 10x faster; absent where PyYAML was built without it).
``CSafeLoader`` builds Python objects with the same constructor and resolver as ``yaml.SafeLoader``; only scanning,
parsing and composing differ, and on a few inputs they differ in what they accept or build (found by differential
fuzzing; tests/unit/test_cli_documents.py keeps the cases):

* libyaml accepts a tab after a token, a block scalar header followed by ``#``, and ``?`` inside a plain scalar in
  a flow collection, which the pure loader refuses;
* an empty node tagged ``!`` is ``''`` for libyaml and None for the pure loader; a byte order mark after the first
  character is read differently;
* libyaml composes a document recursively in C: one nested some 30,000 levels deep overflows the C stack and kills
  the process, where the pure loader raises RecursionError (at about 490 levels).

So the C loader reads a text only when none of these can occur in it (``fast_path``: a few scans in C, about 3% of
the C loader's own time). Texts with line breaks other than LF and CRLF go to the pure loader too, as the nesting
bound counts lines by LF. Otherwise, and whenever the C loader raises, the pure loader reads the text, and its
documents or its exception (with the line, column and snippet of the problem) are the answer. Either way the answer
is the pure loader's: what `llama-operator validate` prints (document numbers, error texts, findings) does not
depend on which loader read the file, and node positions (line, column) agree between the two on the fast path.

On libyaml, building the Python objects and resolving implicit tags were then half the time. ``_FastLoader`` builds
plain documents in one pass (``_build``) and remembers each plain scalar's tag; anything else is left to PyYAML's
constructor, so its documents are CSafeLoader's.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

_STR, _SEQ, _MAP, _MERGE, _VALUE = (f"tag:yaml.org,2002:{name}" for name in ("str", "seq", "map", "merge", "value"))
# The scalar constructors of yaml.SafeConstructor, called as it calls them.
_SCALARS = {
    f"tag:yaml.org,2002:{name}": yaml.SafeLoader.yaml_constructors[f"tag:yaml.org,2002:{name}"]
    for name in ("null", "bool", "int", "float", "binary", "timestamp")
}


class _LeftToPyYAML(Exception):
    """A node the one-pass builder leaves to PyYAML's constructor: an alias, a merge or "=" key, a set, an ordered
    map, a local tag, an unhashable key."""


def _build(loader: Any, node: yaml.Node) -> Any:
    """What ``SafeConstructor.construct_document`` builds from ``node``, for plain documents (mappings, sequences,
    scalars of the standard tags, no alias): the same dicts in the same key order, lists and scalars, without its
    per-node bookkeeping (generators for every collection, a dict of every constructed node). Raises
    _LeftToPyYAML for anything else. A scalar's own errors (``!!int ""``) propagate, and load_all then asks the pure
    loader, whose document order of construction decides which error is reported."""
    seen: set[int] = set()

    def build(node: yaml.Node) -> Any:
        kind = node.__class__
        tag = node.tag
        if kind is yaml.ScalarNode:
            if tag == _STR:
                return node.value
            construct = _SCALARS.get(tag)
            if construct is None:
                raise _LeftToPyYAML
            return construct(loader, node)
        if id(node) in seen:
            raise _LeftToPyYAML  # an alias: PyYAML's constructor shares the object (and builds a cycle)
        seen.add(id(node))
        if kind is yaml.SequenceNode and tag == _SEQ:
            items = []
            for child in node.value:
                items.append(build(child))
            return items
        if kind is yaml.MappingNode and tag == _MAP:
            mapping = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE or key_node.tag == _VALUE:
                    raise _LeftToPyYAML
                key = build(key_node)
                if key.__class__ is list or key.__class__ is dict:
                    raise _LeftToPyYAML  # unhashable: PyYAML's constructor says where
                mapping[key] = build(value_node)
            return mapping
        raise _LeftToPyYAML

    return build(node)


if hasattr(yaml, "CSafeLoader"):

    class _FastLoader(yaml.CSafeLoader):
        """``yaml.CSafeLoader`` that builds plain documents in one pass (``_build``) and remembers the implicit tag of
        each plain scalar it resolved: a fleet's manifests repeat their keys and values, and the resolver tries its
        regular expressions on each. Both give what CSafeLoader gives."""

        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self._plain_tags: dict[str, str] = {}

        def resolve(self, kind: type[yaml.Node], value: Any, implicit: tuple[bool, bool]) -> Any:
            resolver: Any = super()  # PyYAML's resolver is untyped
            # A plain scalar's tag depends on its text alone, unless someone registered path resolvers.
            if kind is yaml.ScalarNode and implicit[0] and not self.yaml_path_resolvers:
                tag = self._plain_tags.get(value)
                if tag is None:
                    tag = self._plain_tags[value] = resolver.resolve(kind, value, implicit)
                return tag
            return resolver.resolve(kind, value, implicit)

        def construct_document(self, node: yaml.Node) -> Any:
            try:
                return _build(self, node)
            except _LeftToPyYAML:
                return super().construct_document(node)


# None where PyYAML was built without libyaml.
C_LOADER: type[Any] | None = _FastLoader if hasattr(yaml, "CSafeLoader") else None

# Nesting bound of the fast path. A block collection nested in another starts further right, or at the same
# column for a sequence that is a mapping's value, so block nesting is at most 2 x (indentation + 1), where the
# indentation of a line counts the "- ", "? " and ": " indicators before its first node too. Every flow collection
# opens with "[" or "{", and one in a sequence may hold an implicit single-pair mapping: flow nesting is at most
# 2 x the brackets of the document. A document cannot span a "---" line. So a text whose indentation stays under
# MAX_INDENT and whose documents each hold at most MAX_BRACKETS brackets nests at most 2 x 41 + 2 x 100 + 1 = 283
# levels: libyaml's C recursion is safe (it crashed at 40,000 levels and not at 20,000), and the pure loader would
# not have hit RecursionError either (it needs two frames a level, and 1,000 are allowed).
MAX_INDENT = 40
MAX_BRACKETS = 100

_DIFFERENT_CHARACTERS = ("\t", "\x85", "\u2028", "\u2029")
# Each starts with a literal, so that re scans for it in C: a line indented MAX_INDENT or more (counting indicators);
# a block scalar header ("|" or ">", up to two indentation and chomping indicators) followed by "#"; a "!" tag with no
# suffix, which may tag an empty node.
_DEEP_LINE = re.compile(rf"\n[ ?:-]{{{MAX_INDENT}}}")
_HEADER_COMMENT = re.compile(r"#(?:(?<=[|>]#)|(?<=[|>][-+0-9]#)|(?<=[|>][-+0-9][-+0-9]#))")
_BARE_TAG = re.compile(r"!(?<![^\s\[{,\ufeff]!)(?=[\s,\]}]|\Z)")


def load_all(text: str) -> list[Any]:
    """Every document of ``text`` (None for an empty one), exactly as ``list(yaml.safe_load_all(text))`` gives
    them; raises what that raises."""
    if C_LOADER is not None and fast_path(text):
        try:
            return list(yaml.load_all(text, Loader=C_LOADER))
        except Exception:  # noqa: S110 - whatever libyaml refused, the pure loader's verdict is the one reported
            pass
    return list(yaml.safe_load_all(text))


def fast_path(text: str) -> bool:
    """Whether the C loader reads ``text`` as the pure loader does (the module docstring says when it does not)."""
    if any(character in text for character in _DIFFERENT_CHARACTERS) or "\ufeff" in text[1:]:
        return False
    if "\r" in text and text.count("\r") != text.count("\r\n"):
        return False  # a lone CR breaks lines that the indentation scan below does not see
    if _DEEP_LINE.search("\n" + text[:MAX_INDENT]) or _DEEP_LINE.search(text):
        return False
    if _HEADER_COMMENT.search(text) or _BARE_TAG.search(text):
        return False
    return _documents_fit(text)


def _documents_fit(text: str) -> bool:
    """No document holds more than MAX_BRACKETS brackets, nor a "?" together with a bracket."""
    brackets, question = 0, False
    for index, piece in enumerate(text.split("\n---")):
        if index == 0 or piece[:1] in ("", " ", "\n", "\r"):
            brackets, question = 0, False  # a document marker: a new document starts
        brackets += piece.count("[") + piece.count("{")
        question = question or "?" in piece
        if brackets > MAX_BRACKETS or (question and brackets):
            return False
    return True
