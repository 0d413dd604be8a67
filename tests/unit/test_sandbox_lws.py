"""The LeaderWorkerSet controller's place in the sandbox: pinned version, loopback webhooks, certificate."""

from __future__ import annotations

import base64
import ipaddress
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from llamaops_sandbox import config, lws, pki
from llamaops_sandbox.layout import Layout, default_cache

PORTS = config.Ports(*range(20001, 20001 + config.Ports.count()))
LAYOUT = Layout(Path("/cache"))


@pytest.fixture(scope="module")
def module_layout() -> Layout:
    """The shared cache, with the pinned LWS module in it (scripts/sandbox-build.sh lws fetches it)."""
    layout = Layout(default_cache())
    if not lws.webhook_manifests(layout).exists():
        subprocess.run(["bash", str(layout.build_script), "lws"], check=True)
    return layout


def test_controller_runs_on_loopback_without_leader_election_or_its_own_certificates():
    component = next(c for c in config.components(LAYOUT, PORTS) if c.name == "lws-controller")
    # After the control plane it needs, like every controller of the sandbox.
    assert config.COMPONENTS.index(component.name) > config.COMPONENTS.index("kube-apiserver")
    assert component.health_url == f"http://127.0.0.1:{PORTS.lws_health}/healthz"
    assert f"--config={lws.config_file(LAYOUT)}" in component.argv
    assert "--leader-elect=false" in component.argv
    cfg = lws.controller_config(LAYOUT, PORTS.lws_webhook, PORTS.lws_health)
    assert cfg["webhook"] == {"host": "127.0.0.1", "port": PORTS.lws_webhook, "certDir": str(lws.cert_dir(LAYOUT))}
    assert cfg["internalCertManagement"] == {"enable": False}
    assert cfg["health"]["healthProbeBindAddress"] == f"127.0.0.1:{PORTS.lws_health}"
    assert cfg["metrics"]["bindAddress"] == "0"


def test_a_state_file_from_before_lws_still_reads():
    old = {name: port for name, port in PORTS.as_dict().items() if not name.startswith("lws_")}
    ports = config.Ports(**old)
    assert (ports.lws_webhook, ports.lws_health) == (0, 0)


def test_webhooks_point_at_loopback_with_the_sandbox_ca(module_layout: Layout):
    ca = b"-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n"
    manifests = lws.webhook_manifests(module_layout).read_text()
    items = lws.webhook_configurations(manifests, "https://127.0.0.1:9443", ca)
    assert {i["kind"] for i in items} == {"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"}
    hooks = [hook for item in items for hook in item["webhooks"]]
    assert {h["name"] for h in hooks} >= {"mleaderworkerset.kb.io", "mpod.kb.io", "vleaderworkerset.kb.io"}
    for item in items:
        assert item["metadata"]["name"].startswith("lws-")
    for hook in hooks:
        assert set(hook["clientConfig"]) == {"url", "caBundle"}
        assert hook["clientConfig"]["url"].startswith("https://127.0.0.1:9443/")
        assert base64.b64decode(hook["clientConfig"]["caBundle"]) == ca
    pod_hooks = [h for h in hooks if any("pods" in r["resources"] for r in h["rules"])]
    assert {h["name"] for h in pod_hooks} == {"mpod.kb.io", "vpod.kb.io"}
    for hook in pod_hooks:
        # Other pods of the cluster never wait on the LWS controller.
        assert hook["objectSelector"] == {"matchExpressions": [{"key": lws.SET_NAME_LABEL, "operator": "Exists"}]}
    paths = {h["clientConfig"]["url"].removeprefix("https://127.0.0.1:9443") for h in hooks}
    assert "/mutate--v1-pod" in paths


def test_crds_come_from_the_pinned_module(module_layout: Layout):
    names = [p.name for p in lws.crd_files(module_layout)]
    assert names[0] == "leaderworkerset.x-k8s.io_leaderworkersets.yaml"
    assert all(p.exists() for p in lws.crd_files(module_layout))


def test_serving_certificate_is_for_loopback_and_signed_by_the_sandbox_ca(tmp_path: Path):
    pki.ensure_pki(tmp_path)
    out = tmp_path / "lws-webhook"
    pki.ensure_serving_cert(tmp_path, out)
    cert = x509.load_pem_x509_certificate((out / "tls.crt").read_bytes())
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert (out / "tls.key").stat().st_mode & 0o077 == 0
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    # Kept on the next start: the running controller keeps serving the certificate the webhooks trust.
    before = (out / "tls.crt").read_bytes()
    pki.ensure_serving_cert(tmp_path, out)
    assert (out / "tls.crt").read_bytes() == before
