"""Security in the sandbox (issue 12): the chart's RBAC as the API server authorizes it, the HF token never leaving
its Secret, the webhook's TLS as the API server verifies it, and pods under the restricted Pod Security Standard.

- RBAC: the chart's ServiceAccount, Roles and ClusterRoles (`helm template`, namespaced and cluster-wide modes) are
  applied as they are, and `kubectl auth can-i --as=system:serviceaccount:...` answers an exact table: `--list` in
  each namespace (everything granted, nothing else) and single checks of every verb on the granted and the
  sensitive resources, in watched namespaces, the release's and another one, plus cluster-scoped refusals.
- The operator runs as a local process with exactly that identity (a token of the chart's ServiceAccount) and the
  chart's arguments (listen addresses moved to loopback; the webhook called by URL, since nothing routes the API
  server to a Service here). It reconciles a LlamaDeployment whose HF token is in a Secret it cannot read, through
  an invalid update and a crash-loop rollback; the token is then searched for everywhere it could have leaked.
- The webhook's caBundle is what the API server trusts: swapped for another CA, the API server refuses to call it.

Namespaces are sec-*-<hex>; the webhook configuration selects only namespaces labelled with this run's id.
"""

from __future__ import annotations

import base64
import concurrent.futures
import datetime as dt
import json
import re
import secrets
import ssl
import string
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from llama_operator.api import LlamaDeployment
from llama_operator.planning import validate
from llama_operator.render import Owner, children
from tests.helm import documents
from tests.integration.chart_identity import chart_operator, refusals, token_kubeconfig
from tests.integration.conftest import Sandbox, make_namespace, not_found_is_none, wait_for
from tests.integration.llamas import GROUP, PLURAL, VERSION, Llamas, example
from tests.integration.operator_process import OperatorProcess
from tests.unit.chart_template import NAMESPACED
from tests.unit.rendered_examples import pod_templates, rendered

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "llama-operator"
LABEL = "llamaops.dev/security-test"
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}
DENIED = 'admission webhook "validate.llamaops.dev" denied the request'
RBAC_KINDS = ("ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
# Namespaced resources checked verb by verb: everything the chart grants (tests/unit/chart_template.py's NAMESPACED,
# the handlers' needs) and what a compromised operator would want. kubectl's spelling: resource[.group][/sub].
SENSITIVE = (
    ("", "secrets"),
    ("", "configmaps"),
    ("", "serviceaccounts"),
    ("", "serviceaccounts/token"),
    ("", "pods/exec"),
    ("", "pods/attach"),
    ("", "pods/portforward"),
    ("", "persistentvolumeclaims"),
    ("apps", "statefulsets"),
    ("rbac.authorization.k8s.io", "roles"),
    ("rbac.authorization.k8s.io", "rolebindings"),
)
CHECKED = tuple(NAMESPACED) + SENSITIVE
CRD_RULES = {("customresourcedefinitions.apiextensions.k8s.io", ()): {"list", "watch"}}
NAMESPACE_RULES = {("namespaces", ()): {"list", "watch"}}
# The GPU node view (handlers/nodes.py) lists and watches nodes for their GPU labels.
NODE_RULES = {("nodes", ()): {"list", "watch"}}


def kubectl_name(group: str, resource: str) -> tuple[str, str]:
    """(resource[.group], subresource) as `kubectl auth can-i` takes them."""
    base, _, sub = resource.partition("/")
    return f"{base}.{group}" if group else base, sub


def list_name(group: str, resource: str) -> str:
    """How `kubectl auth can-i --list` prints a resource."""
    base, sub = kubectl_name(group, resource)
    return f"{base}/{sub}" if sub else base


def helm_template(sandbox: Sandbox, release: str, namespace: str, values: dict[str, Any]) -> list[dict[str, Any]]:
    proc = sandbox.helm(
        "template", release, str(CHART), "--namespace", namespace, "-f", "-", stdin=yaml.safe_dump(values)
    )
    return documents(proc.stdout)


@dataclass
class Release:
    """The chart's identity applied to the sandbox: its ServiceAccount and RBAC, nothing else."""

    sandbox: Sandbox
    name: str
    namespace: str
    docs: list[dict[str, Any]]
    namespaces: list[str] = field(default_factory=list)

    @property
    def fullname(self) -> str:
        return f"{self.name}-llama-operator"

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.fullname}"

    @property
    def webhook_config(self) -> str:
        return f"{self.fullname}.llamaops.dev"

    @property
    def cert_secret(self) -> str:
        return f"{self.fullname}-webhook-tls"

    def apply(self) -> None:
        rbac = [d for d in self.docs if d["kind"] in RBAC_KINDS]
        applied = self.sandbox.try_kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(rbac))
        assert applied.returncode == 0, applied.stderr

    def chart_args(self) -> list[str]:
        (deployment,) = [d for d in self.docs if d["kind"] == "Deployment"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        args: list[str] = container["args"]
        return args

    def delete(self) -> None:
        rbac = client.RbacAuthorizationV1Api(self.sandbox.api)
        for doc in self.docs:
            if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
                continue
            delete = rbac.delete_cluster_role if doc["kind"] == "ClusterRole" else rbac.delete_cluster_role_binding
            not_found_is_none(delete, doc["metadata"]["name"])
        not_found_is_none(
            client.AdmissionregistrationV1Api(self.sandbox.api).delete_validating_webhook_configuration,
            self.webhook_config,
        )
        core = client.CoreV1Api(self.sandbox.api)
        for namespace in [*self.namespaces, self.namespace]:
            not_found_is_none(core.delete_namespace, namespace)


class CanI:
    """`kubectl auth can-i` as one ServiceAccount; every answer is counted.

    kubectl cannot name the group of a resource the cluster does not serve (the ServiceMonitors of an absent
    Prometheus-Operator): it sends the whole dotted name as a core resource. Those are asked as a SubjectAccessReview
    with the group spelled out, the same authorizer kubectl's SelfSubjectAccessReview reaches."""

    def __init__(self, sandbox: Sandbox, user: str) -> None:
        self.kubectl, self.user, self.api = sandbox.try_kubectl, user, sandbox.api
        self.checked = 0
        self.reviews = 0

    def __call__(self, verb: str, resource: str, namespace: str | None = None, subresource: str = "") -> bool:
        args = ["auth", "can-i", verb, resource, f"--as={self.user}"]
        args += ["-n", namespace] if namespace else []
        args += [f"--subresource={subresource}"] if subresource else []
        proc = self.kubectl(*args)
        answer = proc.stdout.strip()
        assert answer in ("yes", "no"), f"kubectl {' '.join(args)}: {proc.stdout}{proc.stderr}"
        self.checked += 1
        if "doesn't have a resource type" in proc.stderr:
            return self.review(verb, resource, namespace, subresource)
        return answer == "yes"

    def review(self, verb: str, resource: str, namespace: str | None, subresource: str) -> bool:
        kind, _, name = resource.partition("/")
        plural, _, group = kind.partition(".")
        account_namespace = self.user.split(":")[2]
        body = {
            "spec": {
                "user": self.user,
                "groups": [
                    "system:serviceaccounts",
                    f"system:serviceaccounts:{account_namespace}",
                    "system:authenticated",
                ],
                "resourceAttributes": {
                    "namespace": namespace or "",
                    "verb": verb,
                    "group": group,
                    "resource": plural,
                    "subresource": subresource,
                    "name": name,
                },
            }
        }
        answer = client.AuthorizationV1Api(self.api).create_subject_access_review(body)
        self.reviews += 1
        return bool(answer.status.allowed)

    def many(self, checks: list[tuple[str, str, str | None, str]]) -> dict[tuple[str, str, str | None, str], bool]:
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            answers = pool.map(lambda check: self(*check), checks)
            return dict(zip(checks, answers, strict=True))

    def table(self, namespace: str) -> dict[tuple[str, tuple[str, ...]], set[str]]:
        """`--list` in a namespace: (resource, resource names) -> verbs, resource rules only."""
        proc = self.kubectl("auth", "can-i", "--list", "-n", namespace, f"--as={self.user}")
        assert proc.returncode == 0, proc.stderr
        rules: dict[tuple[str, tuple[str, ...]], set[str]] = {}
        for line in proc.stdout.splitlines()[1:]:
            match = re.fullmatch(r"(\S+)\s+\[\]\s+\[(.*?)\]\s+\[(.*?)\]\s*", line)
            if match is None:
                assert line.startswith(" "), f"unparsed --list line: {line!r}"  # a non-resource URL row
                continue
            resource, names, verbs = match.groups()
            rules.setdefault((resource, tuple(names.split())), set()).update(verbs.split())
        return rules


def granted_table(grants: dict[tuple[str, str], set[str]]) -> dict[tuple[str, tuple[str, ...]], set[str]]:
    return {(list_name(group, resource), ()): set(verbs) for (group, resource), verbs in grants.items()}


def verb_matrix(
    can_i: CanI, namespace: str, grants: dict[tuple[str, str], set[str]], rows: tuple[tuple[str, str], ...] = CHECKED
) -> None:
    """Every verb on every resource of ``rows`` in ``namespace``: allowed exactly when ``grants`` says so."""
    checks = []
    for group, resource in rows:
        base, sub = kubectl_name(group, resource)
        checks += [(verb, base, namespace, sub) for verb in VERBS]
    answers = can_i.many(checks)
    allowed = {(verb, f"{base}/{sub}" if sub else base) for (verb, base, _, sub), yes in answers.items() if yes}
    expected = set()
    for (group, resource), verbs in grants.items():
        base, sub = kubectl_name(group, resource)
        expected |= {(verb, f"{base}/{sub}" if sub else base) for verb in verbs if verb in VERBS}
    assert allowed == expected, f"in {namespace}: extra {allowed - expected}, missing {expected - allowed}"


def cluster_refusals(can_i: CanI, release: Release, namespace: str) -> None:
    """What the operator never gets, whatever the mode: cluster-scoped power, identities, Secrets everywhere."""
    denied: list[tuple[str, str, str | None, str]] = [
        *[(verb, "namespaces", None, "") for verb in ("get", "create", "update", "patch", "delete")],
        # Nodes: list and watch only (GPU labels, handlers/nodes.py); no get, no write.
        *[(verb, "nodes", None, "") for verb in ("get", "create", "update", "patch", "delete")],
        *[(verb, "nodes", None, "proxy") for verb in ("get", "create")],
        *[
            (verb, kind, None, "")
            for kind in ("clusterroles.rbac.authorization.k8s.io", "clusterrolebindings.rbac.authorization.k8s.io")
            for verb in ("create", "update", "patch", "delete")
        ],
        ("escalate", "clusterroles.rbac.authorization.k8s.io", None, ""),
        ("bind", "clusterroles.rbac.authorization.k8s.io", None, ""),
        ("escalate", "roles.rbac.authorization.k8s.io", namespace, ""),
        ("bind", "roles.rbac.authorization.k8s.io", namespace, ""),
        ("impersonate", "users", None, ""),
        ("impersonate", "groups", None, ""),
        ("impersonate", "serviceaccounts", namespace, ""),
        *[
            (verb, "customresourcedefinitions.apiextensions.k8s.io", None, "")
            for verb in ("get", "create", "update", "patch", "delete")
        ],
        ("list", "validatingwebhookconfigurations.admissionregistration.k8s.io", None, ""),
        ("delete", f"validatingwebhookconfigurations.admissionregistration.k8s.io/{release.webhook_config}", None, ""),
        ("update", f"validatingwebhookconfigurations.admissionregistration.k8s.io/{release.webhook_config}", None, ""),
        ("get", "validatingwebhookconfigurations.admissionregistration.k8s.io/another.example", None, ""),
        ("patch", "validatingwebhookconfigurations.admissionregistration.k8s.io/another.example", None, ""),
        ("create", "mutatingwebhookconfigurations.admissionregistration.k8s.io", None, ""),
        ("create", "certificatesigningrequests.certificates.k8s.io", None, ""),
        ("update", "certificatesigningrequests.certificates.k8s.io", None, "approval"),
        ("create", "persistentvolumes", None, ""),
        ("create", "tokenreviews.authentication.k8s.io", None, ""),
        ("*", "*", None, ""),
        ("*", "*", namespace, ""),
    ]
    allowed: list[tuple[str, str, str | None, str]] = [
        ("get", f"validatingwebhookconfigurations.admissionregistration.k8s.io/{release.webhook_config}", None, ""),
        ("patch", f"validatingwebhookconfigurations.admissionregistration.k8s.io/{release.webhook_config}", None, ""),
        ("list", "customresourcedefinitions.apiextensions.k8s.io", None, ""),
        ("watch", "customresourcedefinitions.apiextensions.k8s.io", None, ""),
        ("list", "nodes", None, ""),
        ("watch", "nodes", None, ""),
    ]
    answers = can_i.many(denied + allowed)
    assert [check for check in denied if answers[check]] == []
    assert [check for check in allowed if not answers[check]] == []
    # Secrets in every namespace at once (kubectl auth can-i -A).
    for verb in ("get", "list", "watch"):
        proc = can_i.kubectl("auth", "can-i", verb, "secrets", "-A", f"--as={can_i.user}")
        can_i.checked += 1
        assert proc.stdout.strip() == "no", (verb, proc.stdout, proc.stderr)


def cert_secret_rights(can_i: CanI, release: Release) -> None:
    """The release namespace: the self-managed webhook certificate, and no other Secret, readable."""
    own = f"secrets/{release.cert_secret}"
    answers = can_i.many(
        [
            *[
                (verb, own, release.namespace, "")
                for verb in VERBS
                if verb not in ("list", "watch", "deletecollection")
            ],
            *[(verb, "secrets", release.namespace, "") for verb in VERBS],
            *[(verb, "secrets/hf-token", release.namespace, "") for verb in ("get", "update", "patch", "delete")],
        ]
    )
    allowed = {(verb, resource) for (verb, resource, _, _), yes in answers.items() if yes}
    # create cannot be limited to a name (the name is not part of the request's URL); the Secrets it could create
    # it can neither list nor read back, except its own certificate's.
    assert allowed == {("get", own), ("update", own), ("create", own), ("create", "secrets")}


@pytest.fixture(scope="module")
def run_id() -> str:
    # A letter first: an all-digit id, or one like 895e64, is a number to YAML, and the chart's schema wants a string.
    return "r" + uuid.uuid4().hex[:5]


@pytest.fixture(scope="module")
def release(sandbox: Sandbox, llama_crd: str, run_id: str) -> Iterator[Release]:
    """Namespaced mode: the release in sec-ops-*, watching sec-a-* (webhook-checked) and sec-b-* (not)."""
    core = client.CoreV1Api(sandbox.api)
    ops = make_namespace(sandbox, "sec-ops")
    release = Release(sandbox, f"sec-{run_id}", ops, [])
    try:
        watched_a, watched_b = make_namespace(sandbox, "sec-a"), make_namespace(sandbox, "sec-b")
        other = make_namespace(sandbox, "sec-other")
        release.namespaces += [watched_a, watched_b, other]
        core.patch_namespace(watched_a, {"metadata": {"labels": {LABEL: run_id, **RESTRICTED}}})
        core.patch_namespace(watched_b, {"metadata": {"labels": RESTRICTED}})
        core.patch_namespace(ops, {"metadata": {"labels": RESTRICTED}})
        values = {"watch": {"namespaces": [watched_a, watched_b]}, "webhook": {"namespaceLabels": {LABEL: run_id}}}
        release.docs = helm_template(sandbox, release.name, ops, values)
        release.apply()
        yield release
    finally:
        release.delete()


def test_namespaced_mode_grants_exactly_what_the_operator_needs_in_the_watched_namespaces(
    sandbox: Sandbox, release: Release
) -> None:
    watched_a, watched_b, other = release.namespaces
    can_i = CanI(sandbox, release.user)
    cluster = {
        **CRD_RULES,
        **NODE_RULES,
        **NAMESPACE_RULES,  # kopf matches the watched names against the namespace list
        ("validatingwebhookconfigurations.admissionregistration.k8s.io", (release.webhook_config,)): {
            "get",
            "create",
            "patch",
        },
    }
    # The baseline every ServiceAccount has (self-reviews): that of a ServiceAccount nobody granted anything.
    baseline = CanI(sandbox, f"system:serviceaccount:{other}:default").table(other)
    assert all(resource.startswith("selfsubject") for resource, _ in baseline), baseline

    def table(namespace: str) -> dict[tuple[str, tuple[str, ...]], set[str]]:
        return {k: v for k, v in can_i.table(namespace).items() if k not in baseline}

    workloads = granted_table(NAMESPACED)
    assert table(watched_a) == {**workloads, **cluster}
    assert table(watched_b) == {**workloads, **cluster}
    assert table(other) == cluster
    certificate = {("secrets", ()): {"create"}, ("secrets", (release.cert_secret,)): {"get", "update"}}
    assert table(release.namespace) == {**cluster, **certificate}

    verb_matrix(can_i, watched_a, NAMESPACED)
    # Elsewhere nothing of it (the --list table above shows no other grant there at all).
    verb_matrix(can_i, other, {}, rows=tuple(NAMESPACED))
    cert_secret_rights(can_i, release)
    cluster_refusals(can_i, release, watched_a)
    print(f"namespaced mode: 4 --list tables, {can_i.checked} kubectl auth can-i answers, {can_i.reviews} via SAR")


def test_cluster_wide_mode_grants_the_same_everywhere_and_still_no_secrets(sandbox: Sandbox, run_id: str) -> None:
    ops = make_namespace(sandbox, "sec-cw-ops")
    release = Release(sandbox, f"sec-{run_id}-cw", ops, [])
    try:
        other = make_namespace(sandbox, "sec-cw-other")
        release.namespaces.append(other)
        values = {"rbac": {"clusterWide": True}, "watch": {"allNamespaces": True}}
        release.docs = helm_template(sandbox, release.name, ops, values)
        release.apply()
        can_i = CanI(sandbox, release.user)
        baseline = CanI(sandbox, f"system:serviceaccount:{other}:default").table(other)

        def table(namespace: str) -> dict[tuple[str, tuple[str, ...]], set[str]]:
            return {k: v for k, v in can_i.table(namespace).items() if k not in baseline}

        # Watching all namespaces, kopf lists no Namespaces.
        cluster = {
            **CRD_RULES,
            **NODE_RULES,
            ("validatingwebhookconfigurations.admissionregistration.k8s.io", (release.webhook_config,)): {
                "get",
                "create",
                "patch",
            },
        }
        everywhere = {**granted_table(NAMESPACED), **cluster}
        assert table(other) == everywhere
        assert table("default") == everywhere
        certificate = {("secrets", ()): {"create"}, ("secrets", (release.cert_secret,)): {"get", "update"}}
        assert table(ops) == {**everywhere, **certificate}
        verb_matrix(can_i, other, NAMESPACED)
        cert_secret_rights(can_i, release)
        cluster_refusals(can_i, release, other)
        answers = can_i.many([("list", "namespaces", None, ""), ("watch", "namespaces", None, "")])
        assert not any(answers.values())
        print(
            f"cluster-wide mode: 3 --list tables, {can_i.checked} kubectl auth can-i answers, {can_i.reviews} via SAR"
        )
    finally:
        release.delete()


# ---------------------------------------------------------------------------------------------------------------
# The operator as the chart's ServiceAccount, and the HF token.


def hf_token() -> str:
    return "hf_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(34))


def traces(token: str) -> dict[str, str]:
    """Forms a leaked token would take: itself, either half of its body (a truncated or wrapped copy), base64."""
    body = token.removeprefix("hf_")
    encoded = base64.b64encode(token.encode()).decode().rstrip("=")
    return {"token": token, "head": body[:16], "tail": body[-16:], "base64": encoded[:40]}


def leaks(token: str, text: str) -> list[str]:
    return [name for name, trace in traces(token).items() if trace in text]


@dataclass
class Running:
    release: Release
    operator: OperatorProcess
    admission_outputs: list[str] = field(default_factory=list)

    def ca(self) -> bytes:
        secret = client.CoreV1Api(self.release.sandbox.api).read_namespaced_secret(
            self.release.cert_secret, self.release.namespace
        )
        return base64.b64decode(secret.data["ca.crt"])

    def kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """kubectl as the cluster admin; the output is kept, it is what the webhook answered."""
        proc = self.release.sandbox.try_kubectl(*args, stdin=stdin)
        self.admission_outputs.append(proc.stdout + proc.stderr)
        return proc

    def review(self, document: dict[str, Any], operation: str = "CREATE") -> str:
        """POST an AdmissionReview straight to the webhook, over TLS trusting only the caBundle's CA."""
        gvk = {"group": GROUP, "version": VERSION, "kind": "LlamaDeployment"}
        gvr = {"group": GROUP, "version": VERSION, "resource": PLURAL}
        request = {
            "uid": str(uuid.uuid4()),
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "name": document["metadata"]["name"],
            "namespace": document["metadata"]["namespace"],
            "operation": operation,
            "userInfo": {"username": "security-test", "groups": ["system:authenticated"]},
            "object": document,
            "dryRun": True,
        }
        body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
        post = urllib.request.Request(
            f"https://127.0.0.1:{self.operator.webhook_port}/validate",
            data=body.encode(),
            headers={"Content-Type": "application/json"},
        )
        context = ssl.create_default_context(cadata=self.ca().decode())
        with urllib.request.urlopen(post, timeout=10, context=context) as response:
            text: str = response.read().decode()
        return text


@pytest.fixture(scope="module")
def running(sandbox: Sandbox, release: Release, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """The operator with the chart's identity and arguments, the webhook by URL on loopback."""
    watched_a, watched_b, _ = release.namespaces
    args = []
    for arg in release.chart_args():
        if arg.startswith(("--webhook-service=", "--webhook-service-port=")):
            continue  # service mode's; the API server reaches the webhook by URL here
        args.append("--webhook=url" if arg == "--webhook=service" else arg)
    assert f"--namespace={watched_a}" in args
    assert f"--webhook-cert-secret={release.namespace}/{release.cert_secret}" in args
    kubeconfig = token_kubeconfig(
        sandbox, release.namespace, release.fullname, tmp_path_factory.mktemp("security") / "kubeconfig"
    )
    operator = chart_operator(sandbox, args, release.name, kubeconfig)
    running = Running(release, operator)
    try:
        operator.start()
        probe = example("invalid-llama4-tp5.yaml", watched_a)

        def refuses() -> bool:
            return (
                DENIED
                in sandbox.try_kubectl("apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(probe)).stderr
            )

        wait_for("the webhook to refuse a TP=5 probe", refuses, timeout=90)
        yield running
    finally:
        for namespace in (watched_a, watched_b):
            Llamas(sandbox, namespace).delete_namespace()
        # In url mode the operator deletes its configuration on exit, which the chart's identity (made for service
        # mode, where the configuration stays) may not do: kopf would retry for a minute. The release removes it.
        operator.stop(grace=5)


def test_the_hf_token_never_leaves_its_secret(sandbox: Sandbox, running: Running) -> None:
    release = running.release
    watched_a, watched_b, _ = release.namespaces
    core, apps = client.CoreV1Api(sandbox.api), client.AppsV1Api(sandbox.api)
    token = hf_token()
    for namespace in (watched_a, watched_b):
        core.create_namespaced_secret(
            namespace, {"metadata": {"name": "hf-token"}, "type": "Opaque", "stringData": {"token": token}}
        )
    a, b = Llamas(sandbox, watched_a), Llamas(sandbox, watched_b)

    # A (webhook-checked): create, reach Running, crash after an update and be rolled back.
    body = example("llama31-8b-h100.yaml", watched_a)
    assert body["spec"]["model"]["tokenSecretRef"] == {"name": "hf-token"}
    created = running.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(body))
    assert created.returncode == 0, created.stderr
    status = a.wait_phase("llama31-8b", "Running", timeout=120)
    assert next(c for c in status["conditions"] if c["type"] == "Available")["status"] == "True"
    wait_for("lastKnownGood", lambda: a.status("llama31-8b").get("lastKnownGood"), timeout=60)
    # The webhook refuses an invalid update and a token pasted into extraArgs, without repeating it.
    tp5 = running.kubectl(
        "patch", "llamadeployment", "llama31-8b", "-n", watched_a, "--type=merge", "-p",
        json.dumps({"spec": {"engine": {"tensorParallelSize": 5}}}),
    )  # fmt: skip
    assert tp5.returncode != 0
    assert DENIED in tp5.stderr
    assert "spec.engine.tensorParallelSize: tp_" in tp5.stderr
    pasted = running.kubectl(
        "patch", "llamadeployment", "llama31-8b", "-n", watched_a, "--type=merge", "-p",
        json.dumps({"spec": {"engine": {"extraArgs": ["--hf-token", token]}}}),
    )  # fmt: skip
    assert pasted.returncode != 0
    assert "spec.engine.extraArgs[0]: secret_in_extra_args" in pasted.stderr
    crash = {
        "llamaops.dev/fake-crash": "segfault",
        "llamaops.dev/fake-crash-after": "2s",
        "llamaops.dev/fake-crash-when": "--max-model-len 65536",
        "llamaops.dev/fake-crash-message": "Segmentation fault (core dumped)",
    }
    crashing = running.kubectl(
        "patch", "llamadeployment", "llama31-8b", "-n", watched_a, "--type=merge", "-p",
        json.dumps({"spec": {"engine": {"maxModelLen": 65536}, "podMetadata": {"annotations": crash}}}),
    )  # fmt: skip
    assert crashing.returncode == 0, crashing.stderr
    a.wait_status(
        "llama31-8b", "a rollback", lambda s: any(r["action"] == "Rollback" for r in s.get("remediations", [])), 150
    )
    a.wait_phase("llama31-8b", "Running", timeout=120)

    # B (no webhook): the operator itself meets an invalid update and a token in extraArgs.
    b.create(example("llama31-8b-h100.yaml", watched_b))
    b.wait_phase("llama31-8b", "Running", timeout=120)
    b.patch_spec("llama31-8b", {"engine": {"tensorParallelSize": 5}})
    assert b.wait_phase("llama31-8b", "Invalid")["findings"]
    b.patch_spec("llama31-8b", {"engine": {"tensorParallelSize": 1}})
    b.wait_phase("llama31-8b", "Running")
    pasted_body = example("llama31-8b-h100.yaml", watched_b)
    pasted_body["metadata"]["name"] = "pasted-token"
    pasted_body["spec"]["engine"]["extraArgs"] = [f"--hf-token={token}"]
    b.create(pasted_body)
    pasted_status = b.wait_phase("pasted-token", "Invalid")
    assert any(f["code"] == "secret_in_extra_args" for f in pasted_status["findings"])
    assert b.deployment("pasted-token") is None

    # The webhook's own answers, straight from it.
    running.admission_outputs.append(running.review(a.get("llama31-8b")))
    refused = running.review({**pasted_body, "metadata": {"name": "pasted-token", "namespace": watched_a}})
    assert json.loads(refused)["response"]["allowed"] is False
    assert "secret_in_extra_args" in refused
    running.admission_outputs.append(refused)

    # Everything the operator and the webhook wrote or served.
    serializer = client.ApiClient().sanitize_for_serialization
    places: dict[str, str] = {}
    for namespace, llamas in ((watched_a, a), (watched_b, b)):
        for item in llamas.api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]:
            name = item["metadata"]["name"]
            places[f"{namespace}/{name} status"] = json.dumps(item.get("status"))
            if name != "pasted-token":  # its spec holds the token the user pasted
                places[f"{namespace}/{name} (whole object)"] = json.dumps(item)
                resource = LlamaDeployment.model_validate(item)
                result = validate(item)
                assert result.effective is not None
                owner = Owner(name, namespace, item["metadata"]["uid"], item["metadata"]["generation"])
                manifests = children(owner, resource.spec, result.effective, result.plan, service_monitors=True)
                places[f"{namespace}/{name} pure render"] = json.dumps(manifests)
        places[f"{namespace} events"] = json.dumps(serializer(core.list_namespaced_event(namespace).items))
        for kind, listed in (
            ("deployments", apps.list_namespaced_deployment(namespace)),
            ("replicasets", apps.list_namespaced_replica_set(namespace)),
            ("services", core.list_namespaced_service(namespace)),
            ("poddisruptionbudgets", client.PolicyV1Api(sandbox.api).list_namespaced_pod_disruption_budget(namespace)),
            ("pods", core.list_namespaced_pod(namespace)),
        ):
            assert listed.items, f"no {kind} in {namespace}"
            places[f"{namespace} {kind}"] = json.dumps(serializer(listed.items))
    with urllib.request.urlopen(running.operator.metrics_url, timeout=5) as response:
        places["operator /metrics"] = response.read().decode()
    log = running.operator.log_text()
    places["operator log"] = log
    places["webhook answers"] = "\n".join(running.admission_outputs)

    # The search is real: it finds the token where it is.
    secret = serializer(core.read_namespaced_secret("hf-token", watched_a))
    assert leaks(token, json.dumps(secret)) == ["base64"]
    assert "token" in leaks(token, json.dumps(b.get("pasted-token")["spec"]))
    assert "llamaops_deployments" in places["operator /metrics"]
    assert "Remediated" in places[f"{watched_a} events"] or "CrashLoopDetected" in places[f"{watched_a} events"]
    assert f"{watched_a}/llama31-8b" in log
    found = {where: hits for where, text in places.items() if (hits := leaks(token, text))}
    assert found == {}, f"the HF token leaked into: {found}"
    print(f"searched {len(places)} places ({sum(len(t) for t in places.values())} characters) for the token")

    # The workload references the Secret by name and key only.
    for namespace in (watched_a, watched_b):
        (container,) = apps.read_namespaced_deployment("llama31-8b", namespace).spec.template.spec.containers
        (env,) = [e for e in container.env if e.name == "HF_TOKEN"]
        assert env.value is None
        assert (env.value_from.secret_key_ref.name, env.value_from.secret_key_ref.key) == ("hf-token", "token")
    # It did all this without a single refused request, and without any right to read a Secret here.
    assert refusals(log) == []
    assert not CanI(sandbox, release.user)("get", "secrets/hf-token", watched_a)


def wrong_ca() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not the webhook's CA")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return base64.b64encode(certificate.public_bytes(serialization.Encoding.PEM)).decode()


def test_the_api_server_verifies_the_webhooks_certificate_against_the_ca_bundle(
    sandbox: Sandbox, running: Running
) -> None:
    release = running.release
    watched_a = release.namespaces[0]
    admission = client.AdmissionregistrationV1Api(sandbox.api)
    config = admission.read_validating_webhook_configuration(release.webhook_config)
    (webhook,) = config.webhooks
    assert webhook.failure_policy == "Fail"
    assert webhook.client_config.url == f"https://127.0.0.1:{running.operator.webhook_port}/validate"
    original = webhook.client_config.ca_bundle
    assert base64.b64decode(original) == running.ca()

    valid = example("llama31-8b-h100.yaml", watched_a)
    valid["metadata"]["name"] = "tls-probe"
    invalid = example("invalid-llama4-tp5.yaml", watched_a)

    def dry_run(document: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return sandbox.try_kubectl("create", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(document))

    # The right caBundle: the API server calls the webhook, which answers both ways.
    accepted = dry_run(valid)
    assert accepted.returncode == 0, accepted.stderr
    assert DENIED in dry_run(invalid).stderr

    def set_ca(bundle: str) -> None:
        patch = [{"op": "replace", "path": "/webhooks/0/clientConfig/caBundle", "value": bundle}]
        patched = sandbox.try_kubectl(
            "patch", "validatingwebhookconfiguration", release.webhook_config, "--type=json", "-p", json.dumps(patch)
        )
        assert patched.returncode == 0, patched.stderr

    set_ca(wrong_ca())
    try:
        # Another CA: the API server refuses the TLS handshake, so (failurePolicy Fail) the write is refused too.
        refused = wait_for(
            "the API server to distrust the webhook",
            lambda: (proc := dry_run(valid)).returncode != 0 and "failed calling webhook" in proc.stderr and proc,
            timeout=30,
        )
        assert "x509" in refused.stderr or "certificate" in refused.stderr, refused.stderr
        assert "validate.llamaops.dev" in refused.stderr
        assert DENIED not in dry_run(invalid).stderr  # not the webhook's refusal: it was never asked
        really = sandbox.try_kubectl("create", "-f", "-", stdin=yaml.safe_dump(valid))
        assert really.returncode != 0
        assert sandbox.try_kubectl("get", "llamadeployment", "tls-probe", "-n", watched_a).returncode != 0
    finally:
        set_ca(original)
    wait_for("the webhook trusted again", lambda: dry_run(valid).returncode == 0, timeout=30)
    print(f"wrong caBundle refused with: {refused.stderr.strip()[:300]}")


# ---------------------------------------------------------------------------------------------------------------
# Non-root pods, judged by the API server's PodSecurity admission.


def test_serving_pods_and_the_operator_pod_pass_the_restricted_pod_security_standard(
    sandbox: Sandbox, release: Release
) -> None:
    """Server-side dry-run Pods in namespaces that enforce the restricted profile (the chart's pod in the release's
    namespace, where its ServiceAccount is)."""
    serving = release.namespaces[1]  # no webhook
    core = client.CoreV1Api(sandbox.api)
    templates: list[tuple[str, str, dict[str, Any]]] = []
    for name in ("llama31-8b-h100.yaml", "llama4-maverick-bf16-h100-multinode.yaml", "custom-model-inline.yaml"):
        templates += [(f"{name} {where}", serving, t) for where, t in pod_templates(rendered(name, serving))]
    (deployment,) = [d for d in release.docs if d["kind"] == "Deployment"]
    templates.append(("chart operator", release.namespace, deployment["spec"]["template"]))
    assert {where.split(" ", 1)[1] for where, _, _ in templates} >= {
        "Deployment",
        "LeaderWorkerSet leader",
        "LeaderWorkerSet worker",
        "operator",
    }
    for namespace in (serving, release.namespace):
        labels = core.read_namespace(namespace).metadata.labels
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"

    def admit(namespace: str, template: dict[str, Any]) -> str | None:
        pod = {"metadata": {"generateName": "psa-", "labels": template["metadata"].get("labels", {})}}
        try:
            core.create_namespaced_pod(namespace, {**pod, "spec": template["spec"]}, dry_run="All")
        except ApiException as error:
            return str(error.body)
        return None

    refusals = {where: refusal for where, namespace, template in templates if (refusal := admit(namespace, template))}
    assert refusals == {}
    # The check can fail: the same pod without its security settings is refused.
    bare = json.loads(json.dumps(templates[0][2]))
    del bare["spec"]["securityContext"]
    for container in bare["spec"]["containers"]:
        del container["securityContext"]
    refusal = admit(serving, bare)
    assert refusal is not None
    for rule in (
        'violates PodSecurity \\"restricted:latest\\"',
        "allowPrivilegeEscalation != false",
        "unrestricted capabilities",
        "runAsNonRoot != true",
    ):
        assert rule in refusal, refusal
    print(f"{len(templates)} pod templates admitted under restricted:latest")
