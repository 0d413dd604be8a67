"""cli/documents.py: `llama-operator validate` reads manifests with PyYAML's C loader where it reads them as the
pure-Python loader does, and with the pure loader everywhere else, so documents, their numbers, node positions and
error texts are the pure loader's either way (issue #21)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llama_operator.cli import documents
from llama_operator.cli.validate import as_json, as_table, check

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
C_LOADER = getattr(yaml, "CSafeLoader", None)
needs_libyaml = pytest.mark.skipif(C_LOADER is None, reason="this PyYAML has no C loader")

SCOUT = (EXAMPLES / "llama4-scout.yaml").read_text(encoding="utf-8")
TP5 = (EXAMPLES / "invalid-llama4-tp5.yaml").read_text(encoding="utf-8")

# Read alike by both loaders, and on the fast path: what manifests in a GitOps repository look like, and the odd
# corners of YAML around them.
TRICKY = {
    "multi-document with comments and an explicit end": (
        f"# fleet\n---\n{SCOUT}\n# between\n---\n{TP5}...\n--- # empty document\n---\n"
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: serving}  # flow style\n"
    ),
    "anchors, aliases and merge keys": (
        "base: &base\n  vllmVersion: '0.8.3'\n  tensorParallelSize: 8\nengine:\n  <<: *base\n  maxModelLen: 12000\n"
        "same: *base\nlist: &l [1, 2]\nagain: *l\n"
    ),
    "flow style and JSON": (
        '{"apiVersion": "llamaops.dev/v1alpha1", "kind": "LlamaDeployment", "metadata": {"name": "j"}, '
        '"spec": {"model": {"name": "meta-llama/Llama-3.1-8B-Instruct"}, "engine": {"args": ["--a", 1.5, null]}}}\n'
        "---\n[a, {b: c}, [d, [e]], 'q', \"dq\"]\n"
    ),
    "a document that is not a mapping": "- just\n- a list\n---\nplain scalar\n---\n42\n---\n~\n",
    "duplicate keys (the last wins)": "kind: Namespace\nkind: LlamaDeployment\nspec: {a: 1, a: 2}\n",
    "scalars of every implicit type": (
        "ints: [0x1F, 0o17, 1_000, 190:20:30, -7]\nfloats: [1.5e+3, .inf, -.Inf, .NaN, 6.8523015e+5]\n"
        "bools: [yes, No, on, OFF, true]\nnulls: [~, null, '']\ntimes: [2001-12-14t21:59:43.10-05:00, 2002-12-14]\n"
        "strings: ['1', \"0x1F\", !!str 12, 1e3]\nbinary: !!binary aGVsbG8=\nset: !!set {a, b}\n"
        "omap: !!omap [a: 1, b: 2]\n"
    ),
    "block scalars": "a: |\n  line one\n    indented\nb: >-\n  folded\n  text\n\nc: |+\n  kept\n\n",
    "a List of manifests": (
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: llamaops.dev/v1alpha1\n  kind: LlamaDeployment\n"
        "  metadata: {name: one}\n  spec: {}\n- apiVersion: v1\n  kind: ConfigMap\n"
    ),
    "Windows line ends": SCOUT.replace("\n", "\r\n"),
    "a byte order mark first": "\ufeff" + SCOUT,
    "a question mark outside flow collections": "a: what?\n? complex key\n: value\nurl: http://x/?q=1\n",
    "unicode": 'name: ☃ snowman\nemoji: \U0001f600\nquoted: "\\u263A \\x41"\n',
}

# Not valid YAML for either loader: the pure loader's error (and its line, column and snippet) is reported.
BROKEN = {
    "an unclosed flow sequence": "apiVersion: llamaops.dev/v1alpha1\nkind: LlamaDeployment\nspec: [unclosed\n",
    "a bad document among good ones": f"{SCOUT}---\nspec: {{a: b\n---\n{TP5}",
    "bad indentation": "a:\n  b: 1\n c: 2\n",
    "an undefined alias": "a: *nowhere\n",
    "an unhashable key": "? [unhashable, key]\n: value\n",
    "binary": "\x00\x01binary",
    "a bad timestamp": "t: 2001-13-45\n",
}

# Where libyaml and the pure loader part ways: kept off the fast path (documents.py's docstring).
DIVERGENT = {
    "a tab after a scalar": "a: 1\t\n",
    "a comment right after a block scalar header": "a: |#\n  text\n",
    "a question mark in a flow plain scalar": "args: [--url=http://x/?q=1]\n",
    "an empty node tagged !": "a: !\nb: 1\n",
    "a byte order mark inside": "a: 1\n---\n\ufeffb: 2\n",
}


# The loaders' answers: the documents (their repr: key order, NaN, types), or the exception's type and text (PyYAML's
# constructors raise more than YAMLError on some explicitly tagged values: IndexError for `!!int ""`).
def _answer(load: Any, text: str) -> tuple[str, str]:
    try:
        return "documents", repr(load(text))
    except Exception as error:
        return "error", f"{type(error).__name__}: {error}"


def _pure(text: str) -> tuple[str, str]:
    return _answer(lambda text: list(yaml.safe_load_all(text)), text)


def _c(text: str) -> tuple[str, str]:
    """libyaml as PyYAML ships it: CSafeLoader."""
    return _answer(lambda text: list(yaml.load_all(text, Loader=C_LOADER)), text)


def _fast(text: str) -> tuple[str, str]:
    """documents.py's loader on libyaml, whatever the fast path says."""
    return _answer(lambda text: list(yaml.load_all(text, Loader=documents.C_LOADER)), text)


def _load(text: str) -> tuple[str, str]:
    return _answer(documents.load_all, text)


def _nodes(text: str, loader: Any) -> list[tuple[Any, ...]]:
    """Every node of every document, depth first: kind, tag, value of scalars, start and end (line, column)."""
    found: list[tuple[Any, ...]] = []
    for root in yaml.compose_all(text, Loader=loader):
        stack, seen = [root], set()
        while stack:
            node = stack.pop()
            value = node.value if isinstance(node, yaml.ScalarNode) else None
            start, end = node.start_mark, node.end_mark
            found.append((type(node).__name__, node.tag, value, start.line, start.column, end.line, end.column))
            if id(node) in seen or isinstance(node, yaml.ScalarNode):
                continue  # an alias: the node itself was walked where its anchor is
            seen.add(id(node))
            children = node.value if isinstance(node, yaml.SequenceNode) else [n for kv in node.value for n in kv]
            stack.extend(reversed(children))
    return found


@needs_libyaml
@pytest.mark.parametrize("name", sorted(TRICKY))
def test_tricky_yaml_is_read_on_the_fast_path_as_the_pure_loader_reads_it(name: str) -> None:
    text = TRICKY[name]
    assert documents.fast_path(text)
    assert _c(text) == _pure(text)
    assert _fast(text) == _pure(text)
    assert _load(text) == _pure(text)
    assert _pure(text)[0] == "documents"


@needs_libyaml
@pytest.mark.parametrize("name", sorted(TRICKY))
def test_node_positions_agree_between_the_loaders(name: str) -> None:
    """Start and end line and column of every node, as a finding that pointed at a node would report it."""
    pure, c = _nodes(TRICKY[name], yaml.SafeLoader), _nodes(TRICKY[name], C_LOADER)
    assert c == pure
    assert len(pure) > 3


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_yaml_raises_the_pure_loaders_error(name: str) -> None:
    """The pure loader's message: line, column and the snippet with a caret (libyaml's marks have no snippet)."""
    text = BROKEN[name]
    kind, error = _load(text)
    assert kind == "error"
    assert (kind, error) == _pure(text)


# What PyYAML's constructor does beyond plain mappings, sequences and scalars: the one-pass builder leaves these to
# it, and they come out as CSafeLoader (and the pure loader) build them.
CONSTRUCTOR = {
    "an alias shares the object": "a: &x [1, {b: 2}]\nb: *x\n",
    "a recursive sequence": "&a [1, *a]\n",
    "a recursive mapping": "&m {self: *m}\n",
    "merge keys": "base: &b {x: 1, y: 2}\nlist: &l [{z: 3}]\nm: {<<: [*b, {w: 4}], x: 0}\n",
    "a value key": "=: v\nk: {=: inner}\n",
    "set, ordered map, pairs": "s: !!set {a, b}\no: !!omap [a: 1, b: 2]\np: !!pairs [a: 1, a: 2]\n",
    "binary and timestamps": "b: !!binary aGVsbG8=\nd: 2002-12-14\nt: 2001-12-14 21:59:43.10 -5\n",
    "a sequence as a key": "? [a, b]\n: value\n",
    "a mapping as a key": "? {a: b}\n: value\n",
    "a local tag": "a: !local x\n",
    "a string tag on a mapping": "a: !!str {b: c}\n",
    "a mapping tag on a sequence": "a: !!map [b]\n",
    "a bad scalar after a good one": "ok: 1\nbad: !!int 0x\n",
    "two bad scalars": "a: [!!int '']\nb: !!bool maybe\n",
    "explicit standard tags": "i: !!int '12'\nf: !!float '1'\nn: !!null ''\nb: !!bool 'yes'\ns: !!str 1.5\n",
    "verbatim tags": "a: !<tag:yaml.org,2002:int> '7'\nb: !<tag:yaml.org,2002:str> 7\n",
}


@needs_libyaml
@pytest.mark.parametrize("name", sorted(CONSTRUCTOR))
def test_what_pyyamls_constructor_builds_is_built_alike(name: str) -> None:
    text = CONSTRUCTOR[name]
    fast, c = _fast(text), _c(text)
    # The same documents, or an error too: which one may differ (the builder goes depth first, PyYAML's constructor
    # builds collections later), and load_all then reports the pure loader's.
    assert fast == c if c[0] == "documents" else fast[0] == "error"
    assert _load(text) == _pure(text)


@needs_libyaml
def test_aliases_and_cycles_share_objects_as_pyyaml_does() -> None:
    (shared,) = documents.load_all("a: &x [1, {b: 2}]\nb: *x\n")
    assert shared["a"] is shared["b"]
    (cycle,) = documents.load_all("&a [1, *a]\n")
    assert cycle[1] is cycle


def test_error_positions_are_those_of_the_pure_loader() -> None:
    text = f"{SCOUT}---\nspec: {{a: b\n---\n{TP5}"
    with pytest.raises(yaml.MarkedYAMLError) as raised:
        documents.load_all(text)
    mark = raised.value.problem_mark
    assert mark is not None
    assert (mark.line, mark.column) == (SCOUT.count("\n") + 2, 0)
    assert "^" in str(raised.value)  # the pure loader's snippet


@needs_libyaml
@pytest.mark.parametrize("name", sorted(DIVERGENT))
def test_inputs_libyaml_reads_differently_go_to_the_pure_loader(name: str) -> None:
    text = DIVERGENT[name]
    assert _c(text) != _pure(text), "libyaml now agrees: the guard for this case can go"
    assert not documents.fast_path(text)
    assert _load(text) == _pure(text)


@pytest.mark.parametrize("text", ["a: 1\x85b: 2\n", "a: 1\u2028b: 2\n", "a: 1\u2029b: 2\n", "a: 1\rb:\r  c: 2\r"])
def test_line_breaks_the_nesting_bound_does_not_count_go_to_the_pure_loader(text: str) -> None:
    assert not documents.fast_path(text)
    assert _load(text) == _pure(text)


def test_deep_nesting_never_reaches_libyaml() -> None:
    """libyaml composes recursively in C: 100,000 levels overflow the C stack and end the process."""
    deep = "[" * 100_000 + "]" * 100_000
    assert not documents.fast_path(deep)
    with pytest.raises(RecursionError):
        documents.load_all(deep)
    block = "".join(" " * level + f"k{level}:\n" for level in range(documents.MAX_INDENT + 1)) + " " * 50 + "v\n"
    assert not documents.fast_path(block)
    compact = "- " * (documents.MAX_INDENT // 2) + "x\n"
    assert not documents.fast_path(compact)
    many = "a: " + "[" * (documents.MAX_BRACKETS + 1) + "]" * (documents.MAX_BRACKETS + 1) + "\n"
    assert not documents.fast_path(many)


def test_brackets_are_counted_per_document() -> None:
    document = "a: [" + ", ".join(["[1]"] * 30) + "]\n"  # 31 brackets
    assert documents.fast_path("---\n".join([document] * 10))  # 310 in the file, 31 in each document
    assert not documents.fast_path(document * 4)  # one document (and duplicate keys) of 124
    assert not documents.fast_path("---x\n".join([document] * 4))  # "---x" is no document marker


def test_without_libyaml_the_pure_loader_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(documents, "C_LOADER", None)
    calls: list[str] = []
    real = yaml.safe_load_all

    def counted(text: str) -> Any:
        calls.append(text)
        return real(text)

    monkeypatch.setattr(yaml, "safe_load_all", counted)
    assert documents.load_all(SCOUT)[0]["kind"] == "LlamaDeployment"
    assert calls == [SCOUT]


def _outputs(paths: list[str], stdin: str | None = None) -> tuple[str, str, int]:
    report = check(paths, io.StringIO(stdin) if stdin is not None else None)
    return as_table(report, width=120), json.dumps(as_json(report), indent=2), report.status


@needs_libyaml
def test_validate_prints_the_same_bytes_with_either_loader(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Document numbers (FILE#N), skipped documents, findings and unreadable inputs, table and JSON."""
    for index, (name, text) in enumerate(sorted({**TRICKY, **BROKEN, **DIVERGENT}.items())):
        (tmp_path / f"{index:02d}.yaml").write_text(text, encoding="utf-8")
        assert name
    stdin = f"{TP5}---\n{TRICKY['a document that is not a mapping']}---\n{TRICKY['a List of manifests']}"
    fast = _outputs([str(tmp_path), str(EXAMPLES), "-"], stdin)
    monkeypatch.setattr(documents, "C_LOADER", None)
    pure = _outputs([str(tmp_path), str(EXAMPLES), "-"], stdin)
    assert fast == pure
    assert "INVALID  llama4-maverick-tp5  (-#1)" in fast[0]
    assert "(-#2)" in fast[0]  # a document that is not a mapping is a finding
    assert "SKIPPED  v1/ConfigMap  (-#6)" in fast[0]  # a List's items keep the List's number
    assert "not valid YAML" in fast[0]


# Texts built from YAML's tokens, the indicators, indentation and line breaks that matter to scanners.
TOKENS = [
    *("a", "key", "1", "0x1F", "1:30", "-1.5e+3", ".inf", "~", "null", "yes", "2001-12-14", "=", "<<"),
    *(" ", "  ", "\n", "\n", "\n  ", "\n    ", "\n- ", "\n  - ", ": ", ":", "- ", "-", "? ", "?"),
    *("[", "]", "{", "}", ", ", ",", "#", " # c", "&x ", "*x", "!!str ", "!!int ", "!!binary ", "!!set "),
    *("!local ", "!", "|", "|-", ">+", "|2", "'", '"', "''", "\\n", "\\x41", "---", "---\n", "\n...\n"),
    *("%YAML 1.1\n", "%TAG !e! tag:e.com,2000:\n", "!e!x ", "@", "`", "%", "é", "\t", "\r\n", "\ufeff"),
]


@needs_libyaml
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=30).map("".join))
def test_on_the_fast_path_the_loaders_agree(text: str) -> None:
    """Differential: whatever the fast path lets libyaml read, the pure loader reads the same (or refuses too,
    and then its error is the one reported); node positions agree for text ending in a line break, as files do."""
    assert _load(text) == _pure(text)
    if not documents.fast_path(text):
        return
    c, pure = _c(text), _pure(text)
    assert _fast(text) == c if c[0] == "documents" else _fast(text)[0] == "error"
    if c[0] == pure[0] == "documents":
        assert c[1] == pure[1]
        if text.endswith("\n"):
            assert _nodes(text, C_LOADER) == _nodes(text, yaml.SafeLoader)
    else:
        assert c[0] == "error"  # libyaml refusing what the pure loader reads is fine: the pure loader reads it
