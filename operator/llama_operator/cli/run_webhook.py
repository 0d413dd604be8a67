"""The admission-webhook flags of `llama-operator run` (kept apart from run.py, which holds the rest)."""

from __future__ import annotations

import argparse
from pathlib import Path

from llama_operator.webhook.configuration import DEFAULT_NAME
from llama_operator.webhook.options import (
    DEFAULT_PORT,
    DEFAULT_SERVICE_PORT,
    WebhookOptions,
    labels,
    namespaced_name,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "admission webhook",
        "Refuse crashing LlamaDeployments at `kubectl apply`. `url`: the API server calls "
        "https://ADDRESS:PORT/validate (an operator outside the cluster, e.g. the sandbox). `service`: it calls "
        "the Service NAMESPACE/NAME, which forwards to PORT. Without --webhook-cert-dir the operator makes its own "
        "CA and serving certificate, kept in --webhook-cert-secret when given.",
    )
    group.add_argument("--webhook", choices=("off", "url", "service"), default="off", help="default: %(default)s")
    group.add_argument(
        "--webhook-address",
        default=None,
        metavar="ADDR",
        help="listen address; in url mode also the URL host (default: 127.0.0.1 in url mode, 0.0.0.0 in service mode)",
    )
    group.add_argument("--webhook-port", type=int, default=DEFAULT_PORT, metavar="PORT", help="default: %(default)s")
    group.add_argument("--webhook-service", default=None, metavar="NAMESPACE/NAME", help="the Service (service mode)")
    group.add_argument(
        "--webhook-service-port", type=int, default=DEFAULT_SERVICE_PORT, metavar="PORT", help="default: %(default)s"
    )
    certs = group.add_mutually_exclusive_group()
    certs.add_argument(
        "--webhook-cert-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="serve tls.crt/tls.key from DIR, trusting ca.crt (a mounted TLS Secret, e.g. from cert-manager)",
    )
    certs.add_argument(
        "--webhook-cert-secret",
        default=None,
        metavar="NAMESPACE/NAME",
        help="keep the operator's own CA and certificate in this Secret (created if absent; shared by replicas)",
    )
    group.add_argument(
        "--webhook-config-name", default=DEFAULT_NAME, metavar="NAME", help="ValidatingWebhookConfiguration name"
    )
    group.add_argument(
        "--webhook-config",
        choices=("apply", "patch-ca"),
        default="apply",
        help="service mode: `apply` writes the whole ValidatingWebhookConfiguration (creating it); `patch-ca` only "
        "sets the caBundle of the one installed with the operator (the Helm chart, so `helm uninstall` removes it) "
        "and never creates it. url mode always applies it (default: %(default)s)",
    )
    group.add_argument(
        "--webhook-namespace-label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="check only LlamaDeployments in namespaces with this label (repeatable); default: every namespace",
    )


def options_from_args(args: argparse.Namespace) -> WebhookOptions | None:
    """The webhook settings, or None when it is off. Raises OptionsError on inconsistent flags."""
    if args.webhook == "off":
        return None
    default_address = "127.0.0.1" if args.webhook == "url" else "0.0.0.0"  # noqa: S104 - a pod serves on its IP
    return WebhookOptions(
        mode=args.webhook,
        address=args.webhook_address or default_address,
        port=args.webhook_port,
        service=namespaced_name(args.webhook_service, "--webhook-service") if args.webhook_service else None,
        service_port=args.webhook_service_port,
        cert_dir=args.webhook_cert_dir,
        cert_secret=(
            namespaced_name(args.webhook_cert_secret, "--webhook-cert-secret") if args.webhook_cert_secret else None
        ),
        config_name=args.webhook_config_name,
        namespace_labels=labels(args.webhook_namespace_label),
        config_mode=args.webhook_config,
    )
