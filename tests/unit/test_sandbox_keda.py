"""KEDA's place in the sandbox: loopback processes, the aggregation layer, the ExternalName route to the adapter,
certificates, and a state file that checkouts from before KEDA still read."""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import json
import subprocess
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from llamaops_sandbox import cluster, config, keda, pki
from llamaops_sandbox.layout import Layout, default_cache

PORTS = config.Ports(*range(20001, 20001 + config.Ports.count()))
LAYOUT = Layout(Path("/cache"))


def _argv(name: str) -> list[str]:
    return next(c.argv for c in config.components(LAYOUT, PORTS) if c.name == name)


def _flags(name: str) -> dict[str, str]:
    return dict(a.split("=", 1) for a in _argv(name)[1:] if "=" in a)


@pytest.fixture(scope="module")
def module_layout() -> Layout:
    """The shared cache, with the pinned KEDA module in it (scripts/sandbox-build.sh keda fetches it)."""
    layout = Layout(default_cache())
    if not keda.crd_files(layout):
        subprocess.run(["bash", str(layout.build_script), "keda"], check=True)
    return layout


def test_the_operator_serves_on_loopback_with_the_sandbox_certificates_and_no_rotation():
    flags = _flags(keda.OPERATOR)
    assert flags["--metrics-service-bind-address"] == f"127.0.0.1:{PORTS.keda_grpc}"
    assert flags["--health-probe-bind-address"] == f"127.0.0.1:{PORTS.keda_health}"
    assert flags["--metrics-bind-address"] == f"127.0.0.1:{PORTS.keda_metrics}"
    assert flags["--enable-cert-rotation"] == "false"
    assert flags["--leader-elect"] == "false"
    assert flags["--cert-dir"] == str(keda.cert_dir(LAYOUT))
    assert flags["--kubeconfig"] == str(keda.kubeconfig_file(LAYOUT))


def test_the_adapter_serves_on_loopback_and_dials_the_operators_grpc_port():
    flags = _flags(keda.ADAPTER)
    assert flags["--bind-address"] == "127.0.0.1"
    assert flags["--secure-port"] == str(PORTS.keda_adapter)
    assert flags["--metrics-service-address"] == f"127.0.0.1:{PORTS.keda_grpc}"
    certs = keda.cert_dir(LAYOUT)
    assert (flags["--tls-cert-file"], flags["--client-ca-file"]) == (str(certs / "tls.crt"), str(certs / "ca.crt"))
    for flag in ("--lister-kubeconfig", "--authentication-kubeconfig", "--authorization-kubeconfig"):
        assert flags[flag] == str(keda.kubeconfig_file(LAYOUT))
    component = next(c for c in config.components(LAYOUT, PORTS) if c.name == keda.ADAPTER)
    assert component.health_url == f"https://127.0.0.1:{PORTS.keda_adapter}/readyz"


def test_keda_starts_after_the_apiserver_and_stops_before_it():
    order = list(config.COMPONENTS)
    assert order.index(keda.OPERATOR) > order.index("kube-apiserver")
    assert order.index(keda.ADAPTER) > order.index("kube-apiserver")


def test_the_apiserver_proxies_aggregated_apis_with_the_front_proxy_certificate():
    flags = _flags("kube-apiserver")
    assert flags["--requestheader-client-ca-file"].endswith("front-proxy-ca.crt")
    assert flags["--requestheader-allowed-names"] == pki.FRONT_PROXY_CLIENT
    assert flags["--requestheader-username-headers"] == "X-Remote-User"
    assert flags["--requestheader-group-headers"] == "X-Remote-Group"
    assert flags["--requestheader-extra-headers-prefix"] == "X-Remote-Extra-"
    assert flags["--proxy-client-cert-file"].endswith(f"{pki.FRONT_PROXY_CLIENT}.crt")
    assert flags["--proxy-client-key-file"].endswith(f"{pki.FRONT_PROXY_CLIENT}.key")


def test_the_hpa_controller_runs_with_a_short_sync_period():
    flags = _flags("kube-controller-manager")
    assert flags["--controllers"] == "*"
    assert flags["--horizontal-pod-autoscaler-sync-period"] == config.HPA_SYNC_PERIOD


def test_the_apiservice_reaches_the_adapter_through_an_external_name_service():
    ca = b"-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n"
    namespace, service, apiservice = keda.cluster_objects(ca, 20999)
    assert namespace["metadata"]["name"] == keda.NAMESPACE
    assert service["spec"] == {"type": "ExternalName", "externalName": "localhost"}
    assert apiservice["metadata"]["name"] == "v1beta1.external.metrics.k8s.io"
    spec = apiservice["spec"]
    assert spec["service"] == {"name": service["metadata"]["name"], "namespace": keda.NAMESPACE, "port": 20999}
    assert base64.b64decode(spec["caBundle"]) == ca
    assert "insecureSkipTLSVerify" not in spec
    # The aggregator checks the adapter's certificate for the Service's in-cluster name.
    assert f"{service['metadata']['name']}.{keda.NAMESPACE}.svc" == keda.SERVICE_DNS


def test_prometheus_scrapes_the_keda_operator_only_when_it_has_a_port():
    jobs = {j["job_name"]: j for j in config.prometheus_config(LAYOUT, PORTS)["scrape_configs"]}
    assert jobs[keda.OPERATOR]["static_configs"][0]["targets"] == [f"127.0.0.1:{PORTS.keda_metrics}"]
    without = dataclasses.replace(PORTS, **dict.fromkeys(config.KEDA_PORTS, 0))
    assert keda.OPERATOR not in {j["job_name"] for j in config.prometheus_config(LAYOUT, without)["scrape_configs"]}


def test_the_state_file_keeps_kedas_ports_where_an_older_checkout_does_not_look():
    state = cluster.State(PORTS, {"etcd": 1}, {"etcd": "/bin/etcd"}, 3)
    data = json.loads(state.to_json())
    assert set(data["ports"]).isdisjoint(config.KEDA_PORTS)
    # What a checkout from before KEDA builds: a Ports without KEDA's fields, from the "ports" object alone.
    older = [f.name for f in dataclasses.fields(config.Ports) if f.name not in config.KEDA_PORTS]
    assert set(data["ports"]) == set(older)
    assert cluster.State.from_json(state.to_json()) == state


def test_a_state_file_from_before_keda_reads_with_keda_stopped():
    data = json.loads(cluster.State(PORTS, {}, {}, 0).to_json())
    del data["keda_ports"]
    ports = cluster.State.from_json(json.dumps(data)).ports
    assert [getattr(ports, name) for name in config.KEDA_PORTS] == [0] * len(config.KEDA_PORTS)


def test_crds_and_rbac_come_from_the_pinned_module(module_layout: Layout):
    names = {p.name for p in keda.crd_files(module_layout)}
    assert {"keda.sh_scaledobjects.yaml", "keda.sh_triggerauthentications.yaml"} <= names
    assert len(names) == 6
    subjects = []
    for path in keda.rbac_files(module_layout):
        for doc in yaml.safe_load_all(path.read_text()):
            subjects += [s for s in (doc or {}).get("subjects", []) if s["kind"] == "ServiceAccount"]
    # KEDA's RBAC binds its ServiceAccount, the user name its client certificate carries, and the HPA controller's.
    accounts = {f"system:serviceaccount:{s['namespace']}:{s['name']}" for s in subjects}
    assert accounts == {keda.USER, "system:serviceaccount:kube-system:horizontal-pod-autoscaler"}


def test_keda_certificate_names_the_service_and_loopback_and_authenticates_both_ways(tmp_path: Path):
    pki.ensure_pki(tmp_path)
    out = tmp_path / "keda"
    pki.ensure_serving_cert(tmp_path, out, ("127.0.0.1",), ("localhost", keda.SERVICE_DNS), client=True)
    cert = x509.load_pem_x509_certificate((out / "tls.crt").read_bytes())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes()))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", keda.SERVICE_DNS]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}


def test_keda_client_certificate_carries_its_service_account_user(tmp_path: Path):
    pki.ensure_pki(tmp_path)
    pki.ensure_client_cert(tmp_path, "keda", keda.USER, keda.GROUPS)
    cert = x509.load_pem_x509_certificate((tmp_path / "keda.crt").read_bytes())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes()))
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == [keda.USER]
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == list(keda.GROUPS)
    before = (tmp_path / "keda.crt").read_bytes()
    pki.ensure_client_cert(tmp_path, "keda", "someone-else")
    assert (tmp_path / "keda.crt").read_bytes() == before


def test_front_proxy_client_comes_from_its_own_ca_and_is_added_to_an_existing_pki(tmp_path: Path):
    pki.ensure_pki(tmp_path)
    ca_before = (tmp_path / "ca.crt").read_bytes()
    pki.ensure_front_proxy(tmp_path)
    assert (tmp_path / "ca.crt").read_bytes() == ca_before
    client = x509.load_pem_x509_certificate((tmp_path / f"{pki.FRONT_PROXY_CLIENT}.crt").read_bytes())
    front_ca = x509.load_pem_x509_certificate((tmp_path / "front-proxy-ca.crt").read_bytes())
    client.verify_directly_issued_by(front_ca)
    with pytest.raises(ValueError, match=r"[Ii]ssuer"):
        client.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_before))
    assert client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == pki.FRONT_PROXY_CLIENT
    before = (tmp_path / f"{pki.FRONT_PROXY_CLIENT}.crt").read_bytes()
    pki.ensure_front_proxy(tmp_path)
    assert (tmp_path / f"{pki.FRONT_PROXY_CLIENT}.crt").read_bytes() == before


def test_both_processes_get_keda_pods_environment():
    for component in config.components(LAYOUT, PORTS):
        expected = keda.ENV if component.name in (keda.OPERATOR, keda.ADAPTER) else {}
        assert component.env == expected, component.name
    assert keda.ENV["WATCH_NAMESPACE"] == ""  # every namespace
