"""The chart as `helm template` renders it, for the chart's unit tests (test_chart*) and test_security: the
release it is rendered as, and ways to pick documents, the operator container and its parsed args out of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from llama_operator.cli import build_parser
from tests.unit.sandbox_tools import run

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "llama-operator"
RELEASE, NAMESPACE = "llo", "ops"
FULLNAME = "llo-llama-operator"


def _template_args(sets: tuple[str, ...]) -> list[str]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for item in sets:
        args += ["--set", item]
    return args


def template(*sets: str, values: dict[str, Any] | None = None, tmp: Path | None = None) -> list[dict[str, Any]]:
    """The documents `helm template` renders with ``sets`` (--set) and ``values`` (a values file in ``tmp``)."""
    args = _template_args(sets)
    if values is not None:
        assert tmp is not None
        (tmp / "values.yaml").write_text(yaml.safe_dump(values))
        args += ["--values", str(tmp / "values.yaml")]
    rendered = run("helm", *args)
    assert rendered.returncode == 0, rendered.stderr
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


def template_error(*sets: str) -> str:
    """helm's error for ``sets``, which it must refuse."""
    rendered = run("helm", *_template_args(sets))
    assert rendered.returncode != 0, f"helm template {sets} should fail"
    return rendered.stderr


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    (doc,) = find(docs, kind, name)
    return doc


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (operator,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return operator


def parsed_args(docs: list[dict[str, Any]]) -> Any:
    """The rendered args through the operator's own command line parser."""
    return build_parser().parse_args(container(docs)["args"])


def rules_of(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


# What handlers/ and kopf do in a watched namespace (see templates/_helpers.tpl).
NAMESPACED = {
    ("llamaops.dev", "llamadeployments"): {"get", "list", "watch", "patch"},
    ("llamaops.dev", "llamadeployments/status"): {"patch"},
    ("apps", "deployments"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "services"): {"list", "watch", "create", "patch"},
    ("policy", "poddisruptionbudgets"): {"list", "watch", "create", "patch"},
    ("leaderworkerset.x-k8s.io", "leaderworkersets"): {"get", "list", "watch", "create", "patch", "delete"},
    ("monitoring.coreos.com", "servicemonitors"): {"create", "patch"},
    ("keda.sh", "scaledobjects"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "pods"): {"list", "watch"},
    ("", "pods/log"): {"get"},
    ("", "events"): {"create", "list"},
}
