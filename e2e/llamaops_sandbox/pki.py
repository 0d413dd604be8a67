"""The sandbox's certificates: a CA, the apiserver's serving certificate, client certificates for each identity,
and the service-account signing key. Written once per run directory; ECDSA P-256 keys, fast to make."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=365)
APISERVER_NAMES = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc")
# 10.88.0.1: the real node's pods reach the API server through a forwarder on their bridge's gateway.
APISERVER_IPS = ("127.0.0.1", "10.96.0.1", "10.88.0.1")
# file stem -> (common name, organisation); system:masters is cluster-admin, the others have bootstrap RBAC roles.
CLIENTS = {
    "admin": ("llamaops-sandbox-admin", "system:masters"),
    "controller-manager": ("system:kube-controller-manager", None),
    "scheduler": ("system:kube-scheduler", None),
    # The real node's kubelet (the Node authorizer knows it by this name) and kube-proxy (system:node-proxier).
    "node": ("system:node:llamaops-real-0", "system:nodes"),
    "kube-proxy": ("system:kube-proxy", None),
}


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.write_bytes(pem)
    path.chmod(0o600)


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _builder(subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def _certificate_authority(name: x509.Name) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA: its key and certificate."""
    key = _key()
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def ensure_pki(directory: Path) -> None:
    """Create the CA, certificates and keys unless ca.crt already exists (a complete set is written each time)."""
    if (directory / "ca.crt").exists() and all((directory / f"{stem}.crt").exists() for stem in CLIENTS):
        return
    directory.mkdir(parents=True, exist_ok=True)
    ca_name = _name("llamaops-sandbox-ca")
    ca_key, ca = _certificate_authority(ca_name)

    def issue(
        stem: str, cn: str, org: str | None, usage: x509.ObjectIdentifier, san: x509.SubjectAlternativeName | None
    ) -> None:
        key = _key()
        builder = _builder(_name(cn, org), ca_name, key.public_key()).add_extension(
            x509.ExtendedKeyUsage([usage]), critical=False
        )
        if san is not None:
            builder = builder.add_extension(san, critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        _write_key(directory / f"{stem}.key", key)
        (directory / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    san = x509.SubjectAlternativeName(
        [x509.DNSName(n) for n in APISERVER_NAMES] + [x509.IPAddress(ipaddress.ip_address(i)) for i in APISERVER_IPS]
    )
    issue("apiserver", "kube-apiserver", None, ExtendedKeyUsageOID.SERVER_AUTH, san)
    for stem, (cn, org) in CLIENTS.items():
        issue(stem, cn, org, ExtendedKeyUsageOID.CLIENT_AUTH, None)

    sa_key = _key()
    _write_key(directory / "sa.key", sa_key)
    (directory / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    _write_key(directory / "ca.key", ca_key)
    # Last, so an interrupted run leaves no ca.crt and is redone in full.
    (directory / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))


def _load_ca(directory: Path, stem: str = "ca") -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_key = serialization.load_pem_private_key((directory / f"{stem}.key").read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{directory / f'{stem}.key'} is not an ECDSA key")
    return x509.load_pem_x509_certificate((directory / f"{stem}.crt").read_bytes()), ca_key


def ensure_serving_cert(
    directory: Path,
    out: Path,
    ips: tuple[str, ...] = ("127.0.0.1",),
    dns: tuple[str, ...] = (),
    *,
    client: bool = False,
) -> None:
    """A serving certificate for loopback ``ips`` (and ``dns`` names), signed by the CA in ``directory``, as
    ``out``/tls.crt and tls.key (the names controller-runtime's webhook server reads); ``client``: usable as a
    client certificate too (KEDA's adapter presents its own to the operator). Kept when it exists; added to a
    running sandbox's PKI without touching the rest."""
    if (out / "tls.crt").exists():
        return
    ca, ca_key = _load_ca(directory)
    key = _key()
    usages = [ExtendedKeyUsageOID.SERVER_AUTH, *([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])]
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (
        _builder(_name(f"llamaops-sandbox-{out.name}"), ca.subject, key.public_key())
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    out.mkdir(parents=True, exist_ok=True)
    _write_key(out / "tls.key", key)
    # Last: a directory without tls.crt is redone in full.
    (out / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def ensure_client_cert(directory: Path, stem: str, cn: str, groups: tuple[str, ...] = ()) -> None:
    """A client certificate ``stem``.crt/.key for user ``cn`` in ``groups``, signed by the CA in ``directory``;
    kept when it exists (added to an existing PKI without touching the rest)."""
    if (directory / f"{stem}.crt").exists():
        return
    ca, ca_key = _load_ca(directory)
    key = _key()
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
    cert = (
        _builder(x509.Name(attrs), ca.subject, key.public_key())
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(directory / f"{stem}.key", key)
    (directory / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


# The aggregation layer: kube-apiserver proxies aggregated APIs (KEDA's external metrics) with this client
# certificate and the user in X-Remote-* headers; the extension server trusts the headers only from a client
# certificate of this CA with this name. A CA of its own, as kubeadm makes, so that no other client certificate of
# the sandbox can assert a user in headers.
FRONT_PROXY_CLIENT = "front-proxy-client"


def ensure_front_proxy(directory: Path) -> None:
    """front-proxy-ca.crt/.key and front-proxy-client.crt/.key, unless the client certificate exists (added to a
    PKI made before the aggregation layer was configured, without touching the rest)."""
    if (directory / f"{FRONT_PROXY_CLIENT}.crt").exists():
        return
    ca_name = _name("llamaops-sandbox-front-proxy-ca")
    ca_key, ca = _certificate_authority(ca_name)
    _write_key(directory / "front-proxy-ca.key", ca_key)
    (directory / "front-proxy-ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    key = _key()
    cert = (
        _builder(_name(FRONT_PROXY_CLIENT), ca_name, key.public_key())
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(directory / f"{FRONT_PROXY_CLIENT}.key", key)
    # Last: no client certificate means the set is redone in full.
    (directory / f"{FRONT_PROXY_CLIENT}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
