"""charts/llama-operator through the sandbox's helm: lint, and what `helm template` renders for each mode."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import yaml

from llama_operator.api.crd import crd_manifest
from llama_operator.cli.run import kopf_run_kwargs
from llama_operator.cli.run_webhook import options_from_args
from llama_operator.webhook.certs import service_hostnames
from tests.unit.chart_template import (
    CHART,
    FULLNAME,
    NAMESPACE,
    NAMESPACED,
    RELEASE,
    ROOT,
    container,
    find,
    one,
    parsed_args,
    rules_of,
    template,
    template_error,
)
from tests.unit.sandbox_tools import run


@pytest.mark.parametrize(
    "sets",
    [
        (),
        ("rbac.clusterWide=true", "watch.allNamespaces=true"),
        (
            "webhook.certificates.mode=cert-manager",
            "prometheusRule.enabled=true",
            "metrics.serviceMonitor.enabled=true",
        ),
        ("peering.enabled=true", "replicas=2", "metrics.podMonitor.enabled=true", "webhook.enabled=false"),
        (
            "image.registry=127.0.0.1:5000",
            f"image.digest=sha256:{'0' * 64}",
            "imageRewrites[0].from=ghcr.io/llamaops/vllm",
            "imageRewrites[0].to=127.0.0.1:5000/llamaops/vllm-cpu",
            "helmTest.enabled=false",
        ),
    ],
)
def test_helm_lint_strict(sets: tuple[str, ...]) -> None:
    args = ["lint", "--strict", str(CHART), "--namespace", NAMESPACE]
    for item in sets:
        args += ["--set", item]
    linted = run("helm", *args)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert "0 chart(s) failed" in linted.stdout


def test_chart_version_is_the_operators() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"]


def test_default_install_is_namespaced_and_least_privilege() -> None:
    docs = template()
    (role,) = [r for r in find(docs, "Role") if r["metadata"]["name"] == FULLNAME]
    assert role["metadata"]["namespace"] == NAMESPACE
    assert rules_of(role) == NAMESPACED
    binding = one(docs, "RoleBinding", FULLNAME)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]
    # Only the cluster-scoped needs are cluster-wide: kopf's CRD and Namespace watches, the GPU nodes' labels
    # (read only), the webhook's own configuration.
    cluster = one(docs, "ClusterRole", f"{FULLNAME}-cluster")
    assert rules_of(cluster) == {
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
        ("", "namespaces"): {"list", "watch"},
        ("", "nodes"): {"list", "watch"},
        ("admissionregistration.k8s.io", "validatingwebhookconfigurations"): {"get", "create", "patch"},
    }
    (webhook_rule,) = [r for r in cluster["rules"] if "validatingwebhookconfigurations" in r["resources"]]
    assert webhook_rule["resourceNames"] == [f"{FULLNAME}.llamaops.dev"]
    # Self-managed webhook certificate: create a Secret, read and renew only that one.
    cert_role = one(docs, "Role", f"{FULLNAME}-webhook-cert")
    assert cert_role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": [f"{FULLNAME}-webhook-tls"],
            "verbs": ["get", "update"],
        },
    ]
    args = parsed_args(docs)
    assert args.namespaces == [NAMESPACE]
    assert kopf_run_kwargs(args)["clusterwide"] is False


def test_watched_namespaces_each_get_a_role() -> None:
    docs = template("watch.namespaces={serving,research}")
    roles = [r for r in find(docs, "Role") if r["metadata"]["name"] == FULLNAME]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["research", "serving"]
    assert all(rules_of(r) == NAMESPACED for r in roles)
    assert parsed_args(docs).namespaces == ["serving", "research"]


def test_cluster_wide_rbac_and_patterns() -> None:
    docs = template("rbac.clusterWide=true", "watch.namespaces={team-*,!team-sandbox}")
    assert not [r for r in find(docs, "Role") if r["metadata"]["name"] == FULLNAME]
    workloads = one(docs, "ClusterRole", f"{FULLNAME}-workloads")
    assert rules_of(workloads) == NAMESPACED
    assert one(docs, "ClusterRoleBinding", f"{FULLNAME}-workloads")["roleRef"]["name"] == f"{FULLNAME}-workloads"
    # kopf lists and watches namespaces to match patterns.
    assert rules_of(one(docs, "ClusterRole", f"{FULLNAME}-cluster"))[("", "namespaces")] == {"list", "watch"}
    assert parsed_args(docs).namespaces == ["team-*", "!team-sandbox"]
    everywhere = template("rbac.clusterWide=true", "watch.allNamespaces=true")
    assert kopf_run_kwargs(parsed_args(everywhere))["clusterwide"] is True
    # Watching everything, kopf has no namespaces to match.
    assert ("", "namespaces") not in rules_of(one(everywhere, "ClusterRole", f"{FULLNAME}-cluster"))


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("watch.namespaces={team-*}",), "need rbac.clusterWide"),
        (("watch.allNamespaces=true",), "need rbac.clusterWide"),
        (("replicas=2",), "needs peering.enabled"),
        (("webhook.certificates.mode=vault",), "webhook/certificates/mode"),
        (("metrics.port=0",), "metrics/port"),
        (("unknown=1",), "additional properties"),
    ],
)
def test_inconsistent_values_are_refused(sets: tuple[str, ...], message: str) -> None:
    assert message in template_error(*sets)


def test_peering_grants_and_creates_the_peering_objects() -> None:
    docs = template("peering.enabled=true", "replicas=2")
    role = next(r for r in find(docs, "Role") if r["metadata"]["name"] == FULLNAME)
    assert rules_of(role)[("kopf.dev", "kopfpeerings")] == {"get", "list", "watch", "patch"}
    assert {c["metadata"]["name"] for c in find(docs, "CustomResourceDefinition")} >= {
        "kopfpeerings.kopf.dev",
        "clusterkopfpeerings.kopf.dev",
    }
    peering = one(docs, "KopfPeering")
    assert peering["metadata"]["namespace"] == NAMESPACE
    assert kopf_run_kwargs(parsed_args(docs))["peering_name"] == peering["metadata"]["name"]


def test_operator_pod_is_hardened_with_probe_and_metrics() -> None:
    docs = template()
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532  # the Dockerfile's USER
    operator = container(docs)
    assert operator["securityContext"]["readOnlyRootFilesystem"] is True
    assert operator["securityContext"]["allowPrivilegeEscalation"] is False
    assert operator["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert operator["resources"]["limits"]["memory"]
    assert operator["resources"]["requests"]["cpu"]
    assert {"name": "tmp", "mountPath": "/tmp"} in operator["volumeMounts"]
    ports = {p["name"]: p["containerPort"] for p in operator["ports"]}
    args = parsed_args(docs)
    # The kubelet probes kopf's liveness endpoint where `--liveness` puts it; Prometheus scrapes --metrics-port.
    probe = operator["livenessProbe"]["httpGet"]
    assert args.liveness == f"http://0.0.0.0:{ports[probe['port']]}/healthz"
    assert probe["path"] == "/healthz"
    assert args.metrics_port == ports["metrics"]
    annotations = one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(ports["metrics"])
    assert operator["image"] == "ghcr.io/llamaops/llama-operator:0.1.0"


def test_prometheus_for_crash_detection_is_passed_by_environment() -> None:
    assert "env" not in container(template())
    docs = template("prometheus.url=http://prometheus.monitoring:9090", "prometheus.caFile=/etc/ca/ca.crt")
    assert container(docs)["env"] == [
        {"name": "LLAMAOPS_PROMETHEUS_URL", "value": "http://prometheus.monitoring:9090"},
        {"name": "LLAMAOPS_PROMETHEUS_CA_FILE", "value": "/etc/ca/ca.crt"},
    ]


def test_self_managed_webhook_is_wired_to_its_service_and_secret() -> None:
    docs = template()
    options = options_from_args(parsed_args(docs))
    assert options is not None
    service = one(docs, "Service", f"{FULLNAME}-webhook")
    (port,) = service["spec"]["ports"]
    assert (options.mode, str(options.service)) == ("service", f"{NAMESPACE}/{FULLNAME}-webhook")
    assert options.service_port == port["port"]
    ports = {p["name"]: p["containerPort"] for p in container(docs)["ports"]}
    assert ports[port["targetPort"]] == options.port
    assert service["spec"]["selector"] == one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert str(options.cert_secret) == f"{NAMESPACE}/{FULLNAME}-webhook-tls"
    assert options.config_name == f"{FULLNAME}.llamaops.dev"


def test_cert_manager_webhook_mounts_the_certificate_secret() -> None:
    docs = template("webhook.certificates.mode=cert-manager", "webhook.namespaceLabels.llamaops\\.dev/admission=on")
    options = options_from_args(parsed_args(docs))
    assert options is not None
    assert options.cert_dir is not None
    assert options.cert_secret is None
    assert options.namespace_labels == {"llamaops.dev/admission": "on"}
    certificate = one(docs, "Certificate")
    # The names the operator itself would put in a certificate for this Service.
    assert set(service_hostnames(options.service.name, options.service.namespace)) >= set(  # type: ignore[union-attr]
        certificate["spec"]["dnsNames"]
    )
    assert one(docs, "Issuer")["spec"] == {"selfSigned": {}}
    assert certificate["spec"]["issuerRef"]["name"] == one(docs, "Issuer")["metadata"]["name"]
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "webhook-tls"]
    assert volume["secret"]["secretName"] == certificate["spec"]["secretName"]
    (mount,) = [m for m in container(docs)["volumeMounts"] if m["name"] == "webhook-tls"]
    assert Path(mount["mountPath"]) == options.cert_dir
    # cert-manager writes the Secret: no Secret permissions for the operator.
    assert not find(docs, "Role", f"{FULLNAME}-webhook-cert")
    issuer = template("webhook.certificates.mode=cert-manager", "webhook.certificates.certManager.issuerRef.name=corp")
    assert not find(issuer, "Issuer")
    assert one(issuer, "Certificate")["spec"]["issuerRef"] == {"name": "corp"}


def test_webhook_off_renders_no_webhook_and_no_webhook_rights() -> None:
    docs = template("webhook.enabled=false")
    assert options_from_args(parsed_args(docs)) is None
    assert not find(docs, "Service", f"{FULLNAME}-webhook")
    cluster = one(docs, "ClusterRole", f"{FULLNAME}-cluster")
    assert ("admissionregistration.k8s.io", "validatingwebhookconfigurations") not in rules_of(cluster)
    assert not find(docs, "Role", f"{FULLNAME}-webhook-cert")


def test_crd_is_the_generated_one_and_kept_on_uninstall() -> None:
    crd = one(template(), "CustomResourceDefinition")
    generated = crd_manifest()
    assert crd["spec"] == generated["spec"]
    assert crd["metadata"]["name"] == generated["metadata"]["name"]
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    dropped = one(template("crds.keep=false"), "CustomResourceDefinition")
    assert "helm.sh/resource-policy" not in (dropped["metadata"].get("annotations") or {})
    assert not find(template("crds.enabled=false"), "CustomResourceDefinition")


def test_dashboards_are_configmaps_for_the_grafana_sidecar() -> None:
    docs = template()
    (configmap,) = [c for c in find(docs, "ConfigMap") if "dashboard" in c["metadata"]["name"]]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    ((name, text),) = configmap["data"].items()
    assert json.loads(text) == json.loads((CHART / "files" / "dashboards" / name).read_text())
    folder = template("dashboards.annotations.grafana_folder=LLM", "dashboards.namespace=monitoring")
    (moved,) = [c for c in find(folder, "ConfigMap") if "dashboard" in c["metadata"]["name"]]
    assert moved["metadata"]["namespace"] == "monitoring"
    assert moved["metadata"]["annotations"] == {"grafana_folder": "LLM"}
    assert not [c for c in find(template("dashboards.enabled=false"), "ConfigMap")]


def test_prometheus_rule_is_the_rules_file_with_the_runbook_base() -> None:
    plain = yaml.safe_load((CHART / "files" / "alerts" / "llama-operator.rules.yaml").read_text())
    assert not find(template(), "PrometheusRule")
    rule = one(template("prometheusRule.enabled=true", "prometheusRule.labels.release=kps"), "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kps"
    assert rule["spec"] == plain
    moved = one(
        template("prometheusRule.enabled=true", "prometheusRule.runbookBaseUrl=https://git.example/ops/"),
        "PrometheusRule",
    )
    urls = [r["annotations"]["runbook_url"] for g in moved["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert urls
    assert all(u.startswith("https://git.example/ops/docs/runbooks/") for u in urls)


def test_operator_monitors() -> None:
    docs = template("metrics.serviceMonitor.enabled=true")
    monitor = one(docs, "ServiceMonitor")
    service = one(docs, "Service", f"{FULLNAME}-metrics")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"] == "metrics"
    assert not find(docs, "PodMonitor")
    docs = template("metrics.podMonitor.enabled=true")
    assert not find(docs, "ServiceMonitor")
    pod_monitor = one(docs, "PodMonitor")
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pod_monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pod_monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"


def test_notes_name_the_watched_namespaces() -> None:
    rendered = run("helm", "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client")
    assert rendered.returncode == 0, rendered.stderr
    notes = rendered.stdout.split("NOTES:", 1)[1]
    assert f"It reconciles LlamaDeployments in: {NAMESPACE}." in notes
    # The release owns the webhook configuration (tests/unit/test_chart_install.py): nothing to delete by hand.
    assert f"{FULLNAME}.llamaops.dev, failurePolicy Fail). It is part of this release" in notes
    assert "kubectl delete validatingwebhookconfiguration" not in notes
