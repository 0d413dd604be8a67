"""The chart's values as a platform team audits them: what the default image resolves to, which namespaces the
webhook covers, whose ServiceAccount gets the rights, what can be mounted, and which values are refused (with a
schema message rather than a template error)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.chart_template import (
    CHART,
    FULLNAME,
    NAMESPACE,
    RELEASE,
    container,
    find,
    one,
    template,
    template_error,
)
from tests.unit.sandbox_tools import run

VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def notes(*sets: str) -> str:
    args = ["install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client"]
    for item in sets:
        args += ["--set", item]
    rendered = run("helm", *args)
    assert rendered.returncode == 0, rendered.stderr
    return rendered.stdout.split("NOTES:", 1)[1]


# --- 1. the default image -----------------------------------------------------------------------------------------


def test_the_default_image_names_its_registry_and_notes_say_how_to_replace_it() -> None:
    image = container(template())["image"]
    # A name without a registry host is Docker Hub's library namespace, where nothing of this project exists.
    host = image.split("/", 1)[0]
    assert "/" in image
    assert "." in host or ":" in host
    assert image == "ghcr.io/llamaops/llama-operator:0.1.0"
    text = notes()
    assert "running\nghcr.io/llamaops/llama-operator:0.1.0." in text
    assert "build ./Dockerfile, push it to a registry" in text
    assert "build ./Dockerfile" not in notes("image.registry=registry.example.com/platform")
    readme = (CHART / "README.md").read_text()
    assert "`ghcr.io/llamaops/llama-operator`" in readme
    assert "--set image.registry=registry.example.com/platform --set image.digest=sha256:" in readme


# --- 4. which namespaces the webhook covers -----------------------------------------------------------------------


def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes' LabelSelector semantics; no selector matches everything."""
    if not selector:
        return True
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def namespace(name: str, **labels: str) -> dict[str, str]:
    # The API server labels every namespace with its name (Kubernetes >= 1.21; the chart needs 1.29).
    return {"kubernetes.io/metadata.name": name, **labels}


def webhook_selector(*sets: str) -> dict[str, Any] | None:
    (webhook,) = one(template(*sets), "ValidatingWebhookConfiguration")["webhooks"]
    selector: dict[str, Any] | None = webhook.get("namespaceSelector")
    return selector


def test_the_webhook_covers_the_watched_namespaces_only() -> None:
    default = webhook_selector()
    assert selects(default, namespace(NAMESPACE))
    assert not selects(default, namespace("team-b"))
    team_a = webhook_selector("watch.namespaces={team-a,shared}")
    team_b = webhook_selector("watch.namespaces={team-b}")
    # Two releases, one per team: neither checks (nor, when it is down, blocks) the other's namespace.
    assert [selects(team_a, namespace(n)) for n in ("team-a", "shared", "team-b", NAMESPACE)] == [1, 1, 0, 0]
    assert [selects(team_b, namespace(n)) for n in ("team-a", "shared", "team-b", NAMESPACE)] == [0, 0, 1, 0]


def test_the_webhook_follows_patterns_exclusions_and_all_namespaces() -> None:
    patterns = webhook_selector("rbac.clusterWide=true", "watch.namespaces={team-*,!team-sandbox}")
    # A glob has no label selector: every namespace but the excluded one.
    assert selects(patterns, namespace("team-x"))
    assert selects(patterns, namespace("elsewhere"))
    assert not selects(patterns, namespace("team-sandbox"))
    assert webhook_selector("rbac.clusterWide=true", "watch.allNamespaces=true") is None
    text = notes("rbac.clusterWide=true", "watch.namespaces={team-*}")
    assert "It checks LlamaDeployments in every namespace (a namespace pattern has no label selector" in text
    assert "It checks the namespaces this selector matches:\n  matchExpressions:" in notes()


def test_an_explicit_namespace_selector_wins_and_labels_are_its_shorthand(tmp_path: Path) -> None:
    chosen = {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["llm"]}]}
    docs = template(values={"webhook": {"namespaceSelector": chosen}}, tmp=tmp_path)
    (webhook,) = one(docs, "ValidatingWebhookConfiguration")["webhooks"]
    assert webhook["namespaceSelector"] == chosen
    assert webhook_selector("webhook.namespaceLabels.tier=llm") == {"matchLabels": {"tier": "llm"}}
    assert "not both" in template_error("webhook.namespaceLabels.tier=llm", "webhook.namespaceSelector.matchLabels.a=b")


def test_failure_policy_and_timeout_are_values() -> None:
    (webhook,) = one(template(), "ValidatingWebhookConfiguration")["webhooks"]
    assert (webhook["failurePolicy"], webhook["timeoutSeconds"]) == ("Fail", 5)
    (ignore,) = one(
        template("webhook.failurePolicy=Ignore", "webhook.timeoutSeconds=10"), "ValidatingWebhookConfiguration"
    )["webhooks"]
    assert (ignore["failurePolicy"], ignore["timeoutSeconds"]) == ("Ignore", 10)
    assert "webhook/failurePolicy" in template_error("webhook.failurePolicy=Retry")
    assert "webhook/timeoutSeconds" in template_error("webhook.timeoutSeconds=31")
    assert "failurePolicy Ignore" in notes("webhook.failurePolicy=Ignore")


# --- 5. whose ServiceAccount gets the rights ----------------------------------------------------------------------


def subjects(docs: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {
        (s["namespace"], s["name"])
        for d in docs
        if d["kind"] in ("RoleBinding", "ClusterRoleBinding")
        for s in d["subjects"]
    }


def test_the_rights_never_go_to_the_namespaces_default_service_account() -> None:
    message = template_error("serviceAccount.create=false")
    assert "serviceAccount.create=false needs serviceAccount.name" in message
    existing = template("serviceAccount.create=false", "serviceAccount.name=platform-operator")
    assert not find(existing, "ServiceAccount")
    assert subjects(existing) == {(NAMESPACE, "platform-operator")}
    assert one(existing, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "platform-operator"
    for docs in (template(), template("rbac.clusterWide=true", "watch.allNamespaces=true")):
        assert subjects(docs) == {(NAMESPACE, FULLNAME)}


# --- 6. mounting what prometheus.caFile and bearerTokenFile name --------------------------------------------------


def commented_example() -> dict[str, Any]:
    """The extraVolumes example values.yaml documents, uncommented."""
    text = (CHART / "values.yaml").read_text()
    block = text.split("prometheus.bearerTokenFile name:\n", 1)[1].split("\nextraEnv:", 1)[0]
    example: dict[str, Any] = yaml.safe_load("\n".join(line.removeprefix("#   ") for line in block.splitlines()))
    return example


def test_the_documented_example_mounts_the_prometheus_files(tmp_path: Path) -> None:
    example = commented_example()
    example["prometheus"]["url"] = "https://prometheus.monitoring:9090"
    example["extraEnv"] = [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}]
    docs = template(values=example, tmp=tmp_path)
    operator = container(docs)
    env = {e["name"]: e["value"] for e in operator["env"]}
    assert env["HTTPS_PROXY"] == "http://proxy:3128"
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"] for v in pod["volumes"]}
    for variable in ("LLAMAOPS_PROMETHEUS_CA_FILE", "LLAMAOPS_PROMETHEUS_BEARER_TOKEN_FILE"):
        (mount,) = [m for m in operator["volumeMounts"] if env[variable].startswith(m["mountPath"] + "/")]
        assert mount["name"] in volumes
        assert mount["readOnly"] is True
    # The chart's own volumes stay.
    assert {"tmp", "prometheus-ca", "prometheus-token"} <= volumes


def test_notes_warn_of_a_prometheus_file_under_no_mount() -> None:
    text = notes("prometheus.url=https://p:9090", "prometheus.caFile=/etc/prometheus/ca/ca.crt")
    assert "Warning: prometheus.caFile /etc/prometheus/ca/ca.crt is under no extraVolumeMounts mountPath" in text
    mounted = notes(
        "prometheus.url=https://p:9090", "prometheus.caFile=/etc/prometheus/ca/ca.crt",
        "extraVolumes[0].name=ca", "extraVolumes[0].configMap.name=ca",
        "extraVolumeMounts[0].name=ca", "extraVolumeMounts[0].mountPath=/etc/prometheus/ca",
    )  # fmt: skip
    assert "Warning" not in mounted


# --- 10. values refused, with the schema's message ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"resources": {"limit": {"cpu": "1"}}}, "at '/resources': additional properties 'limit'"),
        ({"resources": {"limits": {"cpu": "one"}}}, "/resources/limits/cpu"),
        ({"podSecurityContext": {"runAsUsr": 1000}}, "at '/podSecurityContext': additional properties 'runAsUsr'"),
        ({"securityContext": {"readOnlyRootFileSystem": True}}, "additional properties 'readOnlyRootFileSystem'"),
        (
            {"webhook": {"certificates": {"certManager": {"issuerRef": {"kind": "ClusterIssuer"}}}}},
            "missing property 'name'",
        ),
        ({"webhook": {"namespaceLabels": {"bad key!": "on"}}}, "invalid propertyName 'bad key!'"),
        ({"webhook": {"namespaceLabels": {"tier": "not a value"}}}, "/webhook/namespaceLabels/tier"),
        ({"commonLabels": {"team/": "x"}}, "invalid propertyName 'team/'"),
        ({"image": None}, "missing property 'image'"),
        ({"podDisruptionBudget": {"enabled": True, "minAvailable": 1, "maxUnavailable": 1}}, "/podDisruptionBudget"),
        ({"strategy": {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}}, "/strategy"),
        ({"networkPolicy": {"webhook": {"from": [{"ipBlok": {"cidr": "10.0/8"}}]}}}, "additional properties 'ipBlok'"),
    ],
)
def test_bad_values_are_refused_by_the_schema(values: dict[str, Any], message: str, tmp_path: Path) -> None:
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--values", str(tmp_path / "values.yaml")]
    rendered = run("helm", *args)
    assert rendered.returncode != 0
    assert "values don't meet the specifications of the schema" in rendered.stderr
    assert message in rendered.stderr


def test_both_monitors_at_once_are_refused() -> None:
    message = template_error("metrics.serviceMonitor.enabled=true", "metrics.podMonitor.enabled=true")
    assert "both scrape the operator (every series twice): enable one" in message


def test_common_labels_cannot_replace_the_charts_own() -> None:
    assert "commonLabels.app.kubernetes.io/name" in template_error("commonLabels.app\\.kubernetes\\.io/name=x")


def paths(node: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else key
            yield path
            yield from paths(value, path)


def test_a_value_set_to_null_is_refused_by_the_schema_or_renders_cleanly() -> None:
    # `--set x=null` removes a value; the templates must never meet a missing section (a nil-pointer error).
    def outcome(path: str) -> tuple[str, int, str]:
        rendered = run("helm", "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--set", f"{path}=null")
        return path, rendered.returncode, rendered.stdout + rendered.stderr

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(outcome, list(paths(VALUES))))
    assert len(outcomes) > 90
    for path, returncode, output in outcomes:
        if returncode:
            assert "values don't meet the specifications of the schema" in output, (path, output[-400:])
            assert re.search(rf"missing propert(y|ies) .*'{path.rsplit('.', 1)[-1]}'", output), (path, output[-400:])
        else:
            assert "<nil>" not in output, path
            assert "%!" not in output, path


# --- expected of a well-kept chart --------------------------------------------------------------------------------


def test_disruption_budget_spread_strategy_and_history(tmp_path: Path) -> None:
    assert not find(template(), "PodDisruptionBudget")
    docs = template("podDisruptionBudget.enabled=true")
    budget = one(docs, "PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"] == one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    half = template("podDisruptionBudget.enabled=true", "podDisruptionBudget.minAvailable=50%")
    assert one(half, "PodDisruptionBudget")["spec"] == {"minAvailable": "50%", "selector": budget["spec"]["selector"]}
    values = {
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"},
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"app": "mine"}},
            },
        ],
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        "revisionHistoryLimit": 1,
    }
    deployment = one(template(values=values, tmp=tmp_path), "Deployment")["spec"]
    zone, host = deployment["template"]["spec"]["topologySpreadConstraints"]
    assert zone["labelSelector"] == {"matchLabels": deployment["selector"]["matchLabels"]}
    assert host["labelSelector"] == {"matchLabels": {"app": "mine"}}
    assert deployment["strategy"] == values["strategy"]
    assert deployment["revisionHistoryLimit"] == 1
    default = one(template(), "Deployment")["spec"]
    assert default["revisionHistoryLimit"] == 3
    assert "strategy" not in default  # Kubernetes' rolling update: the new pod is Ready before the old one stops


def test_network_policies_admit_the_serving_ports_and_the_helm_test(tmp_path: Path) -> None:
    docs = template()
    policy = one(docs, "NetworkPolicy", FULLNAME)
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert selects(policy["spec"]["podSelector"], pod_labels)
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    ports = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert ports == {p["name"] for p in container(docs)["ports"]} == {"webhook", "metrics", "healthz"}
    assert all("from" not in rule for rule in policy["spec"]["ingress"])  # any source by default
    test_pod = next(d for d in find(docs, "Pod") if d["metadata"]["annotations"]["helm.sh/hook"] == "test")
    test_policy = one(docs, "NetworkPolicy", f"{FULLNAME}-test")
    assert selects(test_policy["spec"]["podSelector"], test_pod["metadata"]["labels"])
    assert not selects(policy["spec"]["podSelector"], test_pod["metadata"]["labels"])
    assert "ingress" not in test_policy["spec"]
    monitoring = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    egress = [{"ports": [{"port": 443, "protocol": "TCP"}]}]
    values = {"networkPolicy": {"metrics": {"from": monitoring}, "egress": egress}}
    narrowed = one(template(values=values, tmp=tmp_path), "NetworkPolicy", FULLNAME)["spec"]
    assert narrowed["policyTypes"] == ["Ingress", "Egress"]
    assert narrowed["egress"] == egress
    by_ports = {tuple(p["port"] for p in r.get("ports", [])): r.get("from") for r in narrowed["ingress"]}
    assert by_ports[("metrics", "healthz")] == monitoring
    assert by_ports[("webhook",)] is None
    # The helm test still reaches every port.
    assert by_ports[()] == [{"podSelector": test_policy["spec"]["podSelector"]}]
    off = template("networkPolicy.enabled=false")
    assert not find(off, "NetworkPolicy")


def test_aggregated_roles_give_users_llamadeployments_like_deployments() -> None:
    docs = template()
    view = one(docs, "ClusterRole", f"{FULLNAME}-view")
    edit = one(docs, "ClusterRole", f"{FULLNAME}-edit")
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    assert "rbac.authorization.k8s.io/aggregate-to-view" not in edit["metadata"]["labels"]
    assert view["rules"] == [
        {
            "apiGroups": ["llamaops.dev"],
            "resources": ["llamadeployments", "llamadeployments/status", "llamadeployments/scale"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    written = {(r, v) for rule in edit["rules"] for r in rule["resources"] for v in rule["verbs"]}
    assert ("llamadeployments", "delete") in written
    assert ("llamadeployments/scale", "update") in written
    # Status is the operator's to write.
    assert not any(r == "llamadeployments/status" for r, _ in written)
    # Bound to nobody: the built-in roles carry them to whoever holds those.
    bound = {d["roleRef"]["name"] for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")}
    assert not bound & {f"{FULLNAME}-view", f"{FULLNAME}-edit"}
    names = {d["metadata"]["name"] for d in find(template("rbac.aggregateToDefaultRoles=false"), "ClusterRole")}
    assert not names & {f"{FULLNAME}-view", f"{FULLNAME}-edit"}


def test_common_labels_are_on_every_object_and_the_pods() -> None:
    docs = template("commonLabels.team=serving", "peering.enabled=true", "podDisruptionBudget.enabled=true")
    assert all(d["metadata"]["labels"]["team"] == "serving" for d in docs), [
        d["kind"] for d in docs if d["metadata"].get("labels", {}).get("team") != "serving"
    ]
    assert one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]["team"] == "serving"
    assert "team" not in one(docs, "Deployment")["spec"]["selector"]["matchLabels"]  # selectors are immutable
