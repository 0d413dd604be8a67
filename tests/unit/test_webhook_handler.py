"""The kopf side: the validating handler raises kopf.AdmissionError and fills kopf's warnings; enable() registers
the handler under the id the configuration's URL path names."""

from __future__ import annotations

import datetime as dt
import logging
import stat
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml

from llama_operator.handlers import admission, admission_cluster
from llama_operator.webhook import HANDLER_ID, WebhookOptions, certs

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LOG = logging.getLogger("test")


def example(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text(encoding="utf-8"))
    return document


async def test_an_invalid_object_raises_an_admission_error() -> None:
    warnings: list[str] = []
    with pytest.raises(kopf.AdmissionError) as error:
        await admission.admit(
            warnings=warnings, logger=LOG, operation="CREATE", new=example("invalid-llama4-vllm083.yaml")
        )
    assert error.value.code == 403
    assert "chunked_local_attention_block_table_overrun" in str(error.value)
    assert [warning.split(": ")[1] for warning in warnings] == ["out_of_vocab_token_ids"]


async def test_a_valid_object_passes_and_warns() -> None:
    warnings: list[str] = []
    await admission.admit(
        warnings=warnings, logger=LOG, operation="CREATE", new=example("llama4-maverick-fp8-h200.yaml"), dryrun=True
    )
    assert len(warnings) == 1


def test_enable_registers_the_handler_and_the_server_lifecycle() -> None:
    registry = kopf.OperatorRegistry()
    admission.enable(WebhookOptions(mode="url", address="127.0.0.1", port=19443), registry=registry)
    [handler] = registry._webhooks.get_all_handlers()
    assert handler.id == HANDLER_ID
    assert handler.reason.value == "validating"
    assert set(handler.operations or ()) == {"CREATE", "UPDATE"}
    assert {h.id for h in registry._activities.get_all_handlers()} == {"admission-server", "admission-cleanup"}


def test_generated_material_is_written_privately_and_rewritten_in_place(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    first = certs.generate(("127.0.0.1",), now)
    files = admission_cluster.write_files(first, tmp_path)
    assert files.scratch == tmp_path
    assert files.key.read_bytes() == first.key
    assert files.cert.read_bytes() == first.cert
    assert files.ca.read_bytes() == first.ca_cert
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    second = certs.generate(("127.0.0.1",), now)
    assert admission_cluster.write_files(second, tmp_path) == files
    assert files.cert.read_bytes() == second.cert
    admission_cluster.remove_files(files)
    assert not tmp_path.exists()


def test_a_provided_directory_is_checked_and_used_as_is(tmp_path: Path) -> None:
    bundle = certs.generate(("127.0.0.1",), dt.datetime.now(dt.UTC))
    (tmp_path / "tls.crt").write_bytes(bundle.cert)
    (tmp_path / "tls.key").write_bytes(bundle.key)
    files = admission_cluster.provided_files(tmp_path)
    assert files.ca == tmp_path / "tls.crt"  # no ca.crt: the certificate is its own trust anchor
    assert files.scratch is None  # never deleted by us
    (tmp_path / "ca.crt").write_bytes(bundle.ca_cert)
    assert admission_cluster.provided_files(tmp_path).ca == tmp_path / "ca.crt"
    (tmp_path / "tls.key").write_bytes(certs.generate(("x",), dt.datetime.now(dt.UTC)).key)
    with pytest.raises(certs.CertificateError, match="does not belong"):
        admission_cluster.provided_files(tmp_path)


class _Calls:
    def __init__(self, patched: bool) -> None:
        self.patched = patched
        self.calls: list[tuple[str, str, bytes]] = []

    def apply(self, api: Any, options: WebhookOptions, ca: bytes) -> None:
        self.calls.append(("apply", options.config_name, ca))

    def patch(self, api: Any, options: WebhookOptions, ca: bytes) -> bool:
        self.calls.append(("patch-ca", options.config_name, ca))
        return self.patched


def _server(options: WebhookOptions, tmp_path: Path) -> admission.AdmissionServer:
    files = admission_cluster.write_files(certs.generate(options.hostnames(), dt.datetime.now(dt.UTC)), tmp_path)
    return admission.AdmissionServer(options, files, admission.TlsSource(options, api=None))  # type: ignore[arg-type]


@pytest.mark.parametrize("patched", [True, False])
async def test_a_chart_installed_configuration_only_gets_its_ca_and_is_never_created(
    patched: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls = _Calls(patched)
    monkeypatch.setattr(admission_cluster, "apply_configuration", calls.apply)
    monkeypatch.setattr(admission_cluster, "patch_ca_bundle", calls.patch)
    options = WebhookOptions(
        mode="service",
        address="0.0.0.0",
        port=19443,
        service=admission_cluster.NamespacedName("ops", "llo-webhook"),
        config_name="llo.llamaops.dev",
        config_mode="patch-ca",
    )
    with caplog.at_level(logging.INFO):
        await _server(options, tmp_path)._configure(b"CA")
    assert calls.calls == [("patch-ca", "llo.llamaops.dev", b"CA")]
    if patched:
        assert "caBundle set" in caplog.text
    else:
        # Uninstalled (or deleted by hand): said loudly, and not brought back.
        assert [r.levelno for r in caplog.records if "does not exist" in r.getMessage()] == [logging.ERROR]


async def test_the_operator_applies_the_whole_configuration_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _Calls(True)
    monkeypatch.setattr(admission_cluster, "apply_configuration", calls.apply)
    monkeypatch.setattr(admission_cluster, "patch_ca_bundle", calls.patch)
    for options in (
        WebhookOptions(mode="url", address="127.0.0.1", port=19443, config_mode="patch-ca"),
        WebhookOptions(
            mode="service", address="0.0.0.0", port=19443, service=admission_cluster.NamespacedName("ops", "svc")
        ),
    ):
        await _server(options, tmp_path)._configure(b"CA")
    assert [call[0] for call in calls.calls] == ["apply", "apply"]
