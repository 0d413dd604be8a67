"""The ValidatingWebhookConfiguration builder and the webhook settings (flags of `llama-operator run`)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from llama_operator.cli import build_parser
from llama_operator.cli.run_webhook import options_from_args
from llama_operator.webhook import OptionsError, WebhookOptions, validating_webhook_configuration
from llama_operator.webhook.configuration import (
    DEFAULT_NAME,
    WEBHOOK_NAME,
    ca_bundle_patch,
    service_client_config,
    url_client_config,
)
from llama_operator.webhook.options import NamespacedName, labels, namespaced_name

CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_the_configuration_covers_only_llamadeployments_and_fails_closed() -> None:
    config = validating_webhook_configuration(url_client_config("127.0.0.1", 19443, CA))
    assert config["apiVersion"] == "admissionregistration.k8s.io/v1"
    assert config["kind"] == "ValidatingWebhookConfiguration"
    assert config["metadata"]["name"] == DEFAULT_NAME == "llama-operator.llamaops.dev"
    [webhook] = config["webhooks"]
    assert webhook["rules"] == [
        {
            "apiGroups": ["llamaops.dev"],
            "apiVersions": ["v1alpha1"],
            "resources": ["llamadeployments"],
            "operations": ["CREATE", "UPDATE"],
            "scope": "Namespaced",
        }
    ]
    assert webhook["failurePolicy"] == "Fail"
    assert webhook["sideEffects"] == "None"
    assert webhook["timeoutSeconds"] <= 5
    assert webhook["admissionReviewVersions"] == ["v1"]
    assert "namespaceSelector" not in webhook


def test_url_mode_points_at_the_handler_path_with_the_ca() -> None:
    config = url_client_config("127.0.0.1", 19443, CA)
    assert config == {"url": "https://127.0.0.1:19443/validate", "caBundle": base64.b64encode(CA).decode()}
    assert url_client_config("::1", 9443, CA)["url"] == "https://[::1]:9443/validate"


def test_service_mode_names_the_service_and_path() -> None:
    config = service_client_config("llama-operator-webhook", "ops", 443, CA)
    assert config["service"] == {"name": "llama-operator-webhook", "namespace": "ops", "port": 443, "path": "/validate"}
    assert base64.b64decode(config["caBundle"]) == CA


def test_namespace_labels_become_a_selector() -> None:
    config = validating_webhook_configuration(url_client_config("127.0.0.1", 1, CA), "x", {"team": "ml"})
    assert config["webhooks"][0]["namespaceSelector"] == {"matchLabels": {"team": "ml"}}


@pytest.mark.parametrize("timeout", [0, 6, 30])
def test_a_timeout_above_five_seconds_is_refused(timeout: int) -> None:
    with pytest.raises(ValueError, match="timeoutSeconds"):
        validating_webhook_configuration(url_client_config("127.0.0.1", 1, CA), timeout_seconds=timeout)


def parse(*argv: str) -> WebhookOptions | None:
    return options_from_args(build_parser().parse_args(["run", *argv]))


def test_the_webhook_is_off_by_default() -> None:
    assert parse() is None


def test_url_mode_defaults_to_loopback() -> None:
    options = parse("--webhook", "url", "--webhook-port", "19443")
    assert options is not None
    assert (options.mode, options.address, options.port) == ("url", "127.0.0.1", 19443)
    assert options.hostnames() == ("127.0.0.1", "localhost")
    assert options.url_host == "127.0.0.1"
    assert options.config_name == DEFAULT_NAME
    assert options.cert_dir is None
    assert options.cert_secret is None


def test_service_mode_listens_everywhere_and_certifies_the_service_names() -> None:
    options = parse(
        "--webhook",
        "service",
        "--webhook-service",
        "ops/llama-operator-webhook",
        "--webhook-cert-secret",
        "ops/llama-operator-webhook-tls",
    )
    assert options is not None
    assert options.address == "0.0.0.0"
    assert options.service == NamespacedName("ops", "llama-operator-webhook")
    assert options.cert_secret == NamespacedName("ops", "llama-operator-webhook-tls")
    assert options.hostnames()[0] == "llama-operator-webhook.ops.svc"


def test_all_flags_are_read() -> None:
    options = parse(
        "--webhook",
        "url",
        "--webhook-address",
        "127.0.0.2",
        "--webhook-port",
        "20000",
        "--webhook-cert-dir",
        "/etc/webhook/tls",
        "--webhook-config-name",
        "adm-test.llamaops.dev",
        "--webhook-namespace-label",
        "llamaops.dev/admission-test=abc",
        "--webhook-namespace-label",
        "team=ml",
    )
    assert options == WebhookOptions(
        mode="url",
        address="127.0.0.2",
        port=20000,
        cert_dir=Path("/etc/webhook/tls"),
        config_name="adm-test.llamaops.dev",
        namespace_labels={"llamaops.dev/admission-test": "abc", "team": "ml"},
    )


def test_cert_dir_and_cert_secret_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--webhook", "url", "--webhook-cert-dir", "d", "--webhook-cert-secret", "a/b")
    assert "not allowed with" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--webhook", "service"], "service mode needs"),
        (["--webhook", "url", "--webhook-service", "ops/svc"], "only applies to service mode"),
        (["--webhook", "service", "--webhook-service", "svc"], "NAMESPACE/NAME"),
        (["--webhook", "url", "--webhook-port", "0"], "port must be 1..65535"),
        (["--webhook", "url", "--webhook-config-name", "Bad_Name"], "configuration name"),
        (["--webhook", "url", "--webhook-namespace-label", "novalue"], "KEY=VALUE"),
        (["--webhook", "url", "--webhook-cert-secret", "ns/"], "NAMESPACE/NAME"),
    ],
)
def test_inconsistent_flags_are_refused(argv: list[str], error: str) -> None:
    with pytest.raises(OptionsError, match=error):
        parse(*argv)


def test_a_webhook_timeout_over_five_seconds_is_refused() -> None:
    with pytest.raises(OptionsError, match="timeout"):
        WebhookOptions(mode="url", address="127.0.0.1", port=1, timeout_seconds=10)


def test_label_and_name_parsing() -> None:
    assert labels(["a=b", "example.com/x=", "k=v.1_2-3"]) == {"a": "b", "example.com/x": "", "k": "v.1_2-3"}
    assert str(namespaced_name("ops/name.with.dots", "x")) == "ops/name.with.dots"
    with pytest.raises(OptionsError):
        labels(["a=b c"])


def test_the_ca_patch_sets_only_the_bundle_of_our_webhook() -> None:
    patch = ca_bundle_patch(CA)
    # The test fails the patch (422) on a configuration whose first webhook is not ours; a JSON patch of a missing
    # object is a 404, never a create.
    assert patch == [
        {"op": "test", "path": "/webhooks/0/name", "value": WEBHOOK_NAME},
        {"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": base64.b64encode(CA).decode()},
    ]


def test_who_writes_the_configuration() -> None:
    service = ["--webhook", "service", "--webhook-service", "ops/llama-operator-webhook"]
    applied = parse(*service)
    assert applied is not None
    assert (applied.config_mode, applied.applies_config) == ("apply", True)
    patched = parse(*service, "--webhook-config", "patch-ca")
    assert patched is not None
    assert (patched.config_mode, patched.applies_config) == ("patch-ca", False)
    # Outside the cluster only the operator knows its URL: it always writes the whole configuration.
    url = parse("--webhook", "url", "--webhook-config=patch-ca")
    assert url is not None
    assert url.applies_config is True


def test_an_unknown_configuration_mode_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--webhook", "url", "--webhook-config", "create")
    assert "invalid choice" in capsys.readouterr().err
