"""How the operator serves its admission webhook: where it listens, how the API server reaches it, and where its
TLS material comes from (pure: parsing and checking the settings)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from llama_operator.webhook.certs import service_hostnames
from llama_operator.webhook.configuration import DEFAULT_NAME, MAX_TIMEOUT_SECONDS, TIMEOUT_SECONDS

Mode = Literal["url", "service"]
# Who writes the ValidatingWebhookConfiguration in service mode: the operator, whole (apply), or someone else
# (the Helm chart, so that `helm uninstall` removes it) while the operator only keeps its caBundle (patch-ca).
ConfigMode = Literal["apply", "patch-ca"]
DEFAULT_PORT = 9443
DEFAULT_SERVICE_PORT = 443
# RFC 1123 label (namespaces, Services) and subdomain (Secrets, configuration names).
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
# Label keys (optionally prefixed) and values, as Kubernetes accepts them.
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


class OptionsError(ValueError):
    """The webhook settings are inconsistent or malformed; the message says which and why."""


@dataclass(frozen=True, slots=True)
class NamespacedName:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def namespaced_name(text: str, what: str) -> NamespacedName:
    """Parse ``NAMESPACE/NAME``."""
    namespace, slash, name = text.partition("/")
    if not slash or not _LABEL.match(namespace) or not _SUBDOMAIN.match(name):
        raise OptionsError(f"{what} must be NAMESPACE/NAME (lowercase RFC 1123 names), got {text!r}")
    return NamespacedName(namespace, name)


def labels(pairs: Iterable[str]) -> dict[str, str]:
    """Parse ``KEY=VALUE`` label pairs."""
    parsed: dict[str, str] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(value):
            raise OptionsError(f"a namespace label must be KEY=VALUE with a valid label key and value, got {pair!r}")
        parsed[key] = value
    return parsed


@dataclass(frozen=True, slots=True)
class WebhookOptions:
    """Settings of the admission webhook.

    ``url`` mode: the API server calls ``https://<address>:<port>/validate`` (an operator outside the cluster, as
    in the sandbox). ``service`` mode: it calls the Service ``service`` on ``service_port``, which forwards to
    ``port`` where the operator listens on ``address``.

    ``config_mode``: ``apply`` server-side applies the whole ValidatingWebhookConfiguration (creating it);
    ``patch-ca`` (service mode) only patches the caBundle of the one installed with the operator and never
    creates it, so an operator still running while its Helm release is uninstalled cannot bring it back. In url
    mode the operator always applies it (only the operator knows its URL) and deletes it at exit.

    TLS: ``cert_dir`` holds provided material (tls.crt, tls.key, optional ca.crt: a mounted Secret, e.g. from
    cert-manager); otherwise the operator makes a CA and serving certificate, kept in the Secret ``cert_secret``
    when given (shared by restarts and replicas) or only in memory and a private temporary directory.
    """

    mode: Mode
    address: str
    port: int
    service: NamespacedName | None = None
    service_port: int = DEFAULT_SERVICE_PORT
    cert_dir: Path | None = None
    cert_secret: NamespacedName | None = None
    config_name: str = DEFAULT_NAME
    namespace_labels: dict[str, str] = field(default_factory=dict)
    timeout_seconds: int = TIMEOUT_SECONDS
    config_mode: ConfigMode = "apply"

    def __post_init__(self) -> None:
        if self.mode == "service" and self.service is None:
            raise OptionsError("service mode needs the webhook Service (NAMESPACE/NAME)")
        if self.mode == "url" and self.service is not None:
            raise OptionsError("a webhook Service only applies to service mode")
        if self.cert_dir is not None and self.cert_secret is not None:
            raise OptionsError("give either a certificate directory or a certificate Secret, not both")
        for what, port in (("port", self.port), ("service port", self.service_port)):
            if not 1 <= port <= 65535:
                raise OptionsError(f"the webhook {what} must be 1..65535, got {port}")
        if not _SUBDOMAIN.match(self.config_name):
            raise OptionsError(f"the configuration name must be a lowercase RFC 1123 name, got {self.config_name!r}")
        if not 1 <= self.timeout_seconds <= MAX_TIMEOUT_SECONDS:
            raise OptionsError(f"the webhook timeout must be 1..{MAX_TIMEOUT_SECONDS} seconds")

    @property
    def applies_config(self) -> bool:
        """Whether the operator writes the whole configuration (else it only patches its caBundle)."""
        return self.mode == "url" or self.config_mode == "apply"

    def hostnames(self) -> tuple[str, ...]:
        """The names the serving certificate must carry: how the API server addresses the webhook."""
        if self.service is not None:
            return service_hostnames(self.service.name, self.service.namespace)
        # A listener on every interface is reached on loopback from a local API server.
        host = "127.0.0.1" if self.address in ("0.0.0.0", "") else self.address  # noqa: S104 - a comparison
        return tuple(dict.fromkeys((host, "localhost", "127.0.0.1")))

    @property
    def url_host(self) -> str:
        return self.hostnames()[0]
