"""Admission for LlamaDeployments: the decision (``review``), the webhook configuration (``configuration``), TLS
material (``certs``) and the serving settings (``options``). Pure; the kopf side is ``handlers.admission``."""

from llama_operator.webhook.certs import CertBundle, CertificateError
from llama_operator.webhook.configuration import HANDLER_ID, validating_webhook_configuration
from llama_operator.webhook.options import NamespacedName, OptionsError, WebhookOptions
from llama_operator.webhook.review import Decision, decide, respond

__all__ = [
    "HANDLER_ID",
    "CertBundle",
    "CertificateError",
    "Decision",
    "NamespacedName",
    "OptionsError",
    "WebhookOptions",
    "decide",
    "respond",
    "validating_webhook_configuration",
]
