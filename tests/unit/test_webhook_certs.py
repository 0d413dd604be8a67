"""The webhook's CA and serving certificate: names, chain, renewal, provided material."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509

from llama_operator.webhook import certs

NOW = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
SANDBOX = ("127.0.0.1", "localhost")


def test_the_serving_certificate_names_every_hostname_and_chains_to_the_ca() -> None:
    bundle = certs.generate(("llama-operator-webhook.ops.svc", "10.0.0.7"), NOW)
    assert certs.hostnames_in(bundle.cert) == {"llama-operator-webhook.ops.svc", "10.0.0.7"}
    leaf = x509.load_pem_x509_certificate(bundle.cert)
    ca = x509.load_pem_x509_certificate(bundle.ca_cert)
    leaf.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in usage
    assert leaf.not_valid_before_utc < NOW < leaf.not_valid_after_utc
    assert leaf.not_valid_after_utc - NOW == certs.SERVING_VALIDITY


def handshake(bundle: certs.CertBundle, trusted_ca: bytes, server_hostname: str, tmp_path: Path) -> bytes:
    """A real TLS handshake over loopback: the server presents ``bundle``, the client trusts ``trusted_ca``."""
    (tmp_path / "tls.crt").write_bytes(bundle.cert)
    (tmp_path / "tls.key").write_bytes(bundle.key)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    client_context = ssl.create_default_context(cadata=trusted_ca.decode())
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            connection, _ = listener.accept()
            try:
                with server_context.wrap_socket(connection, server_side=True) as tls:
                    tls.sendall(b"ok")
            except ssl.SSLError:
                pass  # the client refused us

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
                client_context.wrap_socket(raw, server_hostname=server_hostname) as tls,
            ):
                return tls.recv(2)
        finally:
            thread.join(timeout=5)


@pytest.mark.parametrize("hostname", SANDBOX)
def test_a_tls_client_trusting_the_ca_accepts_the_server(hostname: str, tmp_path: Path) -> None:
    bundle = certs.generate(SANDBOX, dt.datetime.now(dt.UTC))
    assert handshake(bundle, bundle.ca_cert, hostname, tmp_path) == b"ok"


def test_a_client_trusting_another_ca_refuses_the_server(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    bundle, other = certs.generate(SANDBOX, now), certs.generate(SANDBOX, now)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(bundle, other.ca_cert, "127.0.0.1", tmp_path)


def test_a_client_asking_for_a_name_not_in_the_certificate_refuses_it(tmp_path: Path) -> None:
    bundle = certs.generate(SANDBOX, dt.datetime.now(dt.UTC))
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(bundle, bundle.ca_cert, "llama-operator-webhook.ops.svc", tmp_path)


def test_a_fresh_bundle_is_kept() -> None:
    bundle = certs.generate(SANDBOX, NOW)
    assert certs.renewal_reason(bundle, SANDBOX, NOW) is None
    assert certs.ensure(bundle, SANDBOX, NOW) == (bundle, None)


def test_no_bundle_makes_one() -> None:
    bundle, reason = certs.ensure(None, SANDBOX, NOW)
    assert reason == "no certificate yet"
    assert certs.hostnames_in(bundle.cert) == set(SANDBOX)


def test_near_expiry_reissues_under_the_same_ca() -> None:
    bundle = certs.generate(SANDBOX, NOW)
    later = NOW + certs.SERVING_VALIDITY - dt.timedelta(days=10)
    reason = certs.renewal_reason(bundle, SANDBOX, later)
    assert reason is not None
    assert "expires" in reason
    renewed, why = certs.ensure(bundle, SANDBOX, later)
    assert why == reason
    assert renewed.ca_cert == bundle.ca_cert  # the caBundle in the configuration stays valid
    assert renewed.cert != bundle.cert
    x509.load_pem_x509_certificate(renewed.cert).verify_directly_issued_by(
        x509.load_pem_x509_certificate(bundle.ca_cert)
    )
    assert certs.renewal_reason(renewed, SANDBOX, later) is None


def test_a_missing_hostname_reissues() -> None:
    bundle = certs.generate(SANDBOX, NOW)
    names = ("llama-operator-webhook.ops.svc",)
    assert (
        certs.renewal_reason(bundle, names, NOW)
        == "the serving certificate does not name llama-operator-webhook.ops.svc"
    )
    renewed, _ = certs.ensure(bundle, names, NOW)
    assert "llama-operator-webhook.ops.svc" in certs.hostnames_in(renewed.cert)


def test_a_ca_near_its_end_is_replaced() -> None:
    bundle = certs.generate(SANDBOX, NOW)
    late = NOW + certs.CA_VALIDITY - dt.timedelta(days=40)
    renewed, reason = certs.ensure(bundle, SANDBOX, late)
    assert reason is not None
    assert "the CA expires" in reason
    assert renewed.ca_cert != bundle.ca_cert


def test_the_serving_certificate_never_outlives_its_ca() -> None:
    ca_cert, ca_key = certs.make_ca(NOW)
    late = NOW + certs.CA_VALIDITY - dt.timedelta(days=100)
    bundle = certs.issue_serving_cert(ca_cert, ca_key, SANDBOX, late)
    leaf = x509.load_pem_x509_certificate(bundle.cert)
    assert leaf.not_valid_after_utc == x509.load_pem_x509_certificate(ca_cert).not_valid_after_utc


def test_provided_material_cannot_be_renewed_by_us() -> None:
    bundle = certs.generate(SANDBOX, NOW)
    provided = certs.CertBundle(bundle.ca_cert, bundle.cert, bundle.key)
    with pytest.raises(certs.CertificateError, match="was provided"):
        certs.ensure(provided, ("other.example",), NOW)


def test_secret_data_round_trips() -> None:
    bundle = certs.generate(SANDBOX, NOW)
    data = bundle.secret_data()
    assert set(data) == {"tls.crt", "tls.key", "ca.crt", "ca.key"}
    assert certs.bundle_from_data(data) == bundle


def test_a_cert_manager_secret_is_read_without_a_ca_key() -> None:
    bundle = certs.generate(SANDBOX, NOW)
    data = {"tls.crt": bundle.cert, "tls.key": bundle.key, "ca.crt": bundle.ca_cert}
    read = certs.bundle_from_data(data)
    assert read.ca_key is None
    assert read.ca_cert == bundle.ca_cert


def test_without_ca_crt_the_certificate_is_its_own_trust_anchor() -> None:
    bundle = certs.generate(SANDBOX, NOW)
    assert certs.bundle_from_data({"tls.crt": bundle.cert, "tls.key": bundle.key}).ca_cert == bundle.cert


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"tls.key": b"x"}, "tls.crt is missing"),
        ({"tls.crt": b"x", "tls.key": b""}, "tls.key is missing"),
        ({"tls.crt": b"not pem", "tls.key": b"not pem"}, "not PEM"),
    ],
)
def test_bad_material_is_refused(data: dict[str, bytes], error: str) -> None:
    with pytest.raises(certs.CertificateError, match=error):
        certs.bundle_from_data(data)


def test_a_key_of_another_certificate_is_refused() -> None:
    one, two = certs.generate(SANDBOX, NOW), certs.generate(SANDBOX, NOW)
    with pytest.raises(certs.CertificateError, match="does not belong"):
        certs.bundle_from_data({"tls.crt": one.cert, "tls.key": two.key})


def test_service_hostnames_start_with_the_name_the_api_server_dials() -> None:
    assert certs.service_hostnames("llama-operator-webhook", "ops") == (
        "llama-operator-webhook.ops.svc",
        "llama-operator-webhook.ops.svc.cluster.local",
        "llama-operator-webhook.ops",
        "llama-operator-webhook",
    )


def test_a_certificate_needs_a_hostname() -> None:
    ca_cert, ca_key = certs.make_ca(NOW)
    with pytest.raises(certs.CertificateError):
        certs.issue_serving_cert(ca_cert, ca_key, (), NOW)
