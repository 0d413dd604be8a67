"""The webhook's TLS material: a CA and a serving certificate made with ``cryptography``, or a provided pair.

The API server only calls HTTPS webhooks and checks the serving certificate against the configuration's caBundle,
so the CA's certificate is what goes into the ValidatingWebhookConfiguration. Pure apart from key generation's
randomness: the clock is a parameter.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY = dt.timedelta(days=3650)
SERVING_VALIDITY = dt.timedelta(days=365)
# Reissue the serving certificate when less than this is left, so a restart well before expiry renews it.
RENEW_BEFORE = dt.timedelta(days=30)
# Clock skew between the operator and the API server must not make a fresh certificate "not yet valid".
BACKDATE = dt.timedelta(minutes=5)
CA_NAME = "llama-operator-webhook-ca"

# Key names of a kubernetes.io/tls Secret; cert-manager adds ca.crt to the same Secret.
TLS_CERT, TLS_KEY, CA_CERT = "tls.crt", "tls.key", "ca.crt"


class CertificateError(ValueError):
    """Provided TLS material is unusable (missing keys, not PEM, key does not match)."""


@dataclass(frozen=True, slots=True)
class CertBundle:
    """PEM bytes: the CA certificate (the caBundle), the serving certificate and its private key.

    ``ca_key`` is kept only for material the operator made itself, so it can reissue the serving certificate
    under the same CA (the caBundle then stays the same); it is None for provided material (cert-manager).
    """

    ca_cert: bytes
    cert: bytes
    key: bytes
    ca_key: bytes | None = None

    def secret_data(self) -> dict[str, bytes]:
        """The data of a kubernetes.io/tls Secret holding this bundle (values not yet base64-encoded)."""
        data = {CA_CERT: self.ca_cert, TLS_CERT: self.cert, TLS_KEY: self.key}
        if self.ca_key is not None:
            data["ca.key"] = self.ca_key
        return data


def _new_key() -> ec.EllipticCurvePrivateKey:
    # ECDSA P-256: the API server's Go TLS stack accepts it, and it is much faster to make than RSA.
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    encoding, pkcs8 = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8
    return key.private_bytes(encoding, pkcs8, serialization.NoEncryption())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _san(hostnames: Iterable[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for host in dict.fromkeys(hostnames):  # unique, in order
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            entries.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(entries)


def make_ca(now: dt.datetime, common_name: str = CA_NAME) -> tuple[bytes, bytes]:
    """A self-signed CA: (certificate PEM, private key PEM)."""
    key = _new_key()
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def issue_serving_cert(ca_cert: bytes, ca_key: bytes, hostnames: Sequence[str], now: dt.datetime) -> CertBundle:
    """A serving certificate for ``hostnames`` (DNS names or IP addresses) signed by the given CA."""
    if not hostnames:
        raise CertificateError("a serving certificate needs at least one hostname")
    issuer = x509.load_pem_x509_certificate(ca_cert)
    signer = serialization.load_pem_private_key(ca_key, password=None)
    if not isinstance(signer, ec.EllipticCurvePrivateKey):
        raise CertificateError("the CA key must be an ECDSA key made by this module")
    key = _new_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hostnames[0]))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + SERVING_VALIDITY, issuer.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_san(hostnames), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(signer, hashes.SHA256())
    )
    return CertBundle(ca_cert, cert.public_bytes(serialization.Encoding.PEM), _pem_key(key), ca_key)


def generate(hostnames: Sequence[str], now: dt.datetime) -> CertBundle:
    """A new CA and a serving certificate for ``hostnames`` under it."""
    ca_cert, ca_key = make_ca(now)
    return issue_serving_cert(ca_cert, ca_key, hostnames, now)


def hostnames_in(cert_pem: bytes) -> frozenset[str]:
    """The certificate's subject alternative names (DNS names and IP addresses) as strings."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return frozenset()
    names = set(san.get_values_for_type(x509.DNSName))
    names.update(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    return frozenset(names)


def renewal_reason(bundle: CertBundle, hostnames: Iterable[str], now: dt.datetime) -> str | None:
    """Why the serving certificate must be reissued (None when it is fine): a missing name, or expiry near."""
    try:
        cert = x509.load_pem_x509_certificate(bundle.cert)
    except ValueError:
        return "the serving certificate is not valid PEM"
    missing = sorted(set(hostnames) - hostnames_in(bundle.cert))
    if missing:
        return f"the serving certificate does not name {', '.join(missing)}"
    if cert.not_valid_after_utc - now < RENEW_BEFORE:
        return f"the serving certificate expires {cert.not_valid_after_utc:%Y-%m-%d}"
    return None


def ensure(existing: CertBundle | None, hostnames: Sequence[str], now: dt.datetime) -> tuple[CertBundle, str | None]:
    """The bundle to serve with, and why it changed (None: ``existing`` is kept as it is).

    Reissues under the same CA when the operator owns the CA key, so the caBundle stays the same; makes a new CA
    when there is no usable CA (none yet, or it expires within the serving validity).
    """
    if existing is None:
        return generate(hostnames, now), "no certificate yet"
    reason = renewal_reason(existing, hostnames, now)
    if reason is None:
        return existing, None
    if existing.ca_key is None:
        raise CertificateError(f"{reason}, and the certificate was provided (no CA key to reissue it)")
    ca = x509.load_pem_x509_certificate(existing.ca_cert)
    if ca.not_valid_after_utc - now < SERVING_VALIDITY:
        return generate(hostnames, now), f"{reason}; the CA expires {ca.not_valid_after_utc:%Y-%m-%d}"
    return issue_serving_cert(existing.ca_cert, existing.ca_key, hostnames, now), reason


def bundle_from_data(data: Mapping[str, bytes]) -> CertBundle:
    """Read a bundle from decoded Secret data or files: tls.crt, tls.key and ca.crt (ca.key when ours).

    Without ca.crt the serving certificate itself is the trust anchor (a self-signed certificate).
    """
    for required in (TLS_CERT, TLS_KEY):
        if not data.get(required):
            raise CertificateError(f"{required} is missing or empty")
    cert, key = data[TLS_CERT], data[TLS_KEY]
    ca_cert = data.get(CA_CERT) or cert
    try:
        leaf = x509.load_pem_x509_certificate(cert)
        x509.load_pem_x509_certificates(ca_cert)
        private = serialization.load_pem_private_key(key, password=None)
    except ValueError as error:
        raise CertificateError(f"not PEM-encoded TLS material: {error}") from error
    public = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if public != leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise CertificateError(f"{TLS_KEY} does not belong to {TLS_CERT}")
    return CertBundle(ca_cert, cert, key, data.get("ca.key") or None)


def service_hostnames(service: str, namespace: str) -> tuple[str, ...]:
    """The names the API server may use for a Service: it dials ``<service>.<namespace>.svc``."""
    return (
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
        f"{service}.{namespace}",
        service,
    )
