"""Admission for LlamaDeployments through kopf: the validating handler, its HTTPS server and its configuration.

``enable(options)`` registers everything; `llama-operator run --webhook url|service` calls it. The handler asks
``webhook.decide`` (the same ``planning.validate`` as `llama-operator validate`), raises ``kopf.AdmissionError``
to refuse and hands warnings to kopf's ``warnings`` list. kopf serves it over HTTPS at ``/validate``.

kopf's own managed configuration is switched off: it hard-codes a 30 s timeout and matches every operation, and
we want 5 s, CREATE/UPDATE only and an optional namespace selector. Instead the server below applies our
ValidatingWebhookConfiguration each time it starts listening (and again after a certificate change, when kopf
restarts it), so the caBundle always matches what is served.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import kopf
from kopf._core.engines.admission import WebhookError
from kubernetes import client

from llama_operator.api import GROUP, PLURAL, VERSION
from llama_operator.handlers import admission_cluster as cluster
from llama_operator.handlers import nodes
from llama_operator.webhook import HANDLER_ID, WebhookOptions, certs, decide, respond

log = logging.getLogger(__name__)
# How often the operator checks whether its own serving certificate needs renewing (renewal starts 30 days
# before expiry, so an hourly look is plenty), and how often kopf re-reads the certificate files.
RENEW_CHECK_S = 3600.0
FILE_CHECK_S = 10.0
# The review of an UPDATE carries the object twice, and the apiserver stores objects up to etcd's 1.5 MiB. At
# aiohttp's default limit (1 MiB) the server answered 413, which the apiserver turns into an unexplained refusal.
MAX_REVIEW_BYTES = 8 * 1024 * 1024


def _plain(body: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return dict(body) if body is not None else None


async def admit(
    *,
    warnings: list[str],
    logger: kopf.Logger,
    operation: str | None = None,
    new: Mapping[str, Any] | None = None,
    old: Mapping[str, Any] | None = None,
    dryrun: bool = False,
    **_: Any,
) -> None:
    """The validating handler: refuse error findings, pass warning findings on as admission warnings."""
    decision = decide(operation, _plain(new), _plain(old), nodes.knowledge())
    warnings.extend(decision.warnings)
    if not decision.allowed:
        logger.info("refused %s%s", operation, " (dry run)" if dryrun else "")
        raise kopf.AdmissionError(decision.message, code=decision.code)


def guarded(fn: kopf.WebhookFn) -> kopf.WebhookFn:
    """kopf's admission function, answering with ``respond`` (the same decision, made without kopf) where kopf
    itself fails. kopf reads the object's metadata before any handler runs and fails (HTTP 500, which the apiserver
    turns into an unexplained refusal) on one it cannot read, e.g. metadata that is not a mapping: the apiserver
    never sends such an object, a direct caller may. kopf's own answers to malformed requests (400, 404) stay."""

    async def serve(request: Any, *, webhook: str | None = None, headers: Any = None, sslpeer: Any = None) -> Any:
        try:
            return await fn(request, webhook=webhook, headers=headers, sslpeer=sslpeer)
        except WebhookError:
            raise
        except Exception as error:
            if not isinstance(request, Mapping):
                raise
            log.warning(
                "kopf could not take an admission request (%s: %.200s); answered directly", type(error).__name__, error
            )
            return respond(request, nodes.knowledge())

    return serve


class TlsSource:
    """Where the serving certificate comes from, and how to renew it when the operator made it."""

    def __init__(self, options: WebhookOptions, api: client.ApiClient) -> None:
        self.options, self.api = options, api
        self.bundle: certs.CertBundle | None = None

    def files(self) -> cluster.TlsFiles:
        """Blocking: read, make or fetch the material and write it where the server loads it from."""
        if self.options.cert_dir is not None:
            return cluster.provided_files(self.options.cert_dir)
        self.bundle = self._current()
        return cluster.write_files(self.bundle)

    def renewed(self) -> certs.CertBundle | None:
        """Blocking: a new bundle when the current one must be (or was, by another replica) replaced."""
        if self.options.cert_dir is not None:
            return None  # provided material is renewed by its provider; kopf notices the files change
        bundle = self._current()
        if bundle == self.bundle:
            return None
        self.bundle = bundle
        return bundle

    def _current(self) -> certs.CertBundle:
        hostnames = self.options.hostnames()
        if self.options.cert_secret is not None:
            return cluster.secret_bundle(self.api, self.options.cert_secret, hostnames)
        bundle, reason = certs.ensure(self.bundle, hostnames, dt.datetime.now(dt.UTC))
        if reason is not None:
            log.info("webhook certificate made for %s: %s", ", ".join(hostnames), reason)
        return bundle


class AdmissionServer(kopf.WebhookServer):
    """kopf's HTTPS webhook server that also keeps our ValidatingWebhookConfiguration pointing at itself."""

    def __init__(self, options: WebhookOptions, files: cluster.TlsFiles, source: TlsSource) -> None:
        super().__init__(
            addr=options.address,
            port=options.port,
            host=options.url_host,
            certfile=files.cert,
            pkeyfile=files.key,
            cafile=files.ca,
            file_check_interval=FILE_CHECK_S,
        )
        self.options, self.files, self.source = options, files, source

    @staticmethod
    async def _serve(fn: kopf.WebhookFn, request: Any) -> Any:
        # kopf's aiohttp request handler (a private method; kopf is pinned), with room for large objects and
        # guarded() around its admission function.
        return await kopf.WebhookServer._serve(guarded(fn), request.clone(client_max_size=MAX_REVIEW_BYTES))

    async def __call__(self, fn: kopf.WebhookFn) -> AsyncIterator[kopf.WebhookClientConfig]:
        renewal = asyncio.create_task(self._renew_forever())
        try:
            # kopf yields once listening, and again after restarting on changed certificate files.
            async for client_config in super().__call__(fn):
                await self._configure(Path(self.files.ca).read_bytes())
                yield client_config
        finally:
            renewal.cancel()

    async def _configure(self, ca: bytes) -> None:
        name = self.options.config_name
        if self.options.applies_config:
            await asyncio.to_thread(cluster.apply_configuration, self.source.api, self.options, ca)
            log.info("ValidatingWebhookConfiguration %s applied", name)
        elif await asyncio.to_thread(cluster.patch_ca_bundle, self.source.api, self.options, ca):
            log.info("ValidatingWebhookConfiguration %s: caBundle set", name)
        else:
            # Installed with the operator (the Helm chart): gone means uninstalled, or deleted by hand. Recreating
            # it here would leave a failurePolicy Fail configuration behind a release that is going away.
            log.error(
                "ValidatingWebhookConfiguration %s does not exist; with --webhook-config=patch-ca it comes with the "
                "operator's installation (the Helm chart) and is not created here: LlamaDeployments are not checked",
                name,
            )

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(RENEW_CHECK_S)
            try:
                bundle = await asyncio.to_thread(self.source.renewed)
            except Exception:
                log.exception("checking the webhook certificate failed; retrying in %.0f s", RENEW_CHECK_S)
                continue
            if bundle is not None:
                # On the event loop, not in a thread: kopf's file watcher (also on the loop) then never sees the
                # new key next to the old certificate. Three small files; kopf restarts the server on its next look.
                cluster.write_files(bundle, self.files.scratch)


def enable(options: WebhookOptions, registry: kopf.OperatorRegistry | None = None) -> None:
    """Register the validating handler, and the startup and cleanup that run its server."""
    state: dict[str, Any] = {}

    kopf.on.validate(GROUP, VERSION, PLURAL, id=HANDLER_ID, operations=["CREATE", "UPDATE"], registry=registry)(admit)

    @kopf.on.startup(id="admission-server", registry=registry)
    async def start_admission(settings: kopf.OperatorSettings, **_: Any) -> None:
        api = cluster.api_client()
        source = TlsSource(options, api)
        files = await asyncio.to_thread(source.files)
        state.update(api=api, files=files)
        settings.admission.server = AdmissionServer(options, files, source)
        settings.admission.managed = None  # ours, see the module's docstring

    @kopf.on.cleanup(id="admission-cleanup", registry=registry)
    async def stop_admission(**_: Any) -> None:
        # Outside the cluster (the sandbox) nobody else serves the webhook: leaving a failurePolicy Fail
        # configuration behind would refuse every LlamaDeployment write until the operator is back.
        if options.mode == "url" and "api" in state:
            await asyncio.to_thread(cluster.delete_configuration, state["api"], options.config_name)
            log.info("ValidatingWebhookConfiguration %s deleted", options.config_name)
        cluster.remove_files(state.get("files"))
