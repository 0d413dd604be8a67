"""A small client for Prometheus's HTTP API (an edge: it does I/O). Typed results, clean errors.

Configured by arguments or the environment: LLAMAOPS_PROMETHEUS_URL, LLAMAOPS_PROMETHEUS_TIMEOUT (seconds),
LLAMAOPS_PROMETHEUS_AUTHORIZATION (the whole Authorization header value, e.g. "Bearer ...") or
LLAMAOPS_PROMETHEUS_BEARER_TOKEN_FILE (read at each request, so a rotated service-account token is picked up),
and LLAMAOPS_PROMETHEUS_CA_FILE. Credentials never appear in reprs, errors or logs.
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from llama_operator.health.detect import CrashLoopMetrics, crash_loop_queries
from llama_operator.health.promql import (
    PrometheusError,
    PrometheusQueryError,
    PrometheusResponseError,
    PrometheusTimeout,
    PrometheusUnavailable,
    QueryResult,
    parse_response,
)

DEFAULT_TIMEOUT_S = 5.0
MAX_BODY = 64 << 20  # a Prometheus answer larger than this is not one the operator asked for


@dataclass(frozen=True)
class PrometheusConfig:
    url: str
    timeout_s: float = DEFAULT_TIMEOUT_S
    authorization: str | None = field(default=None, repr=False)
    bearer_token_file: str | None = None
    ca_file: str | None = None

    def __post_init__(self) -> None:
        parsed = urllib.parse.urlsplit(self.url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"Prometheus URL must be http(s)://host[:port][/prefix], got {self.url!r}")
        if not self.timeout_s > 0:
            raise ValueError(f"Prometheus timeout must be positive, got {self.timeout_s}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PrometheusConfig | None:
        """The configuration from LLAMAOPS_PROMETHEUS_* variables; None when no URL is set (no Prometheus)."""
        env = os.environ if environ is None else environ
        url = env.get("LLAMAOPS_PROMETHEUS_URL", "").strip()
        if not url:
            return None
        timeout = env.get("LLAMAOPS_PROMETHEUS_TIMEOUT", "").strip()
        try:
            timeout_s = float(timeout.removesuffix("s")) if timeout else DEFAULT_TIMEOUT_S
        except ValueError:
            raise ValueError(f"LLAMAOPS_PROMETHEUS_TIMEOUT must be seconds, got {timeout!r}") from None
        return cls(
            url=url,
            timeout_s=timeout_s,
            authorization=env.get("LLAMAOPS_PROMETHEUS_AUTHORIZATION") or None,
            bearer_token_file=env.get("LLAMAOPS_PROMETHEUS_BEARER_TOKEN_FILE") or None,
            ca_file=env.get("LLAMAOPS_PROMETHEUS_CA_FILE") or None,
        )


def _seconds(moment: datetime | float) -> str:
    return f"{moment.timestamp() if isinstance(moment, datetime) else float(moment):.3f}"


class PrometheusClient:
    """Instant and range queries over ``/api/v1``; readiness over ``/-/ready``."""

    def __init__(self, config: PrometheusConfig) -> None:
        self.config = config
        handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
        if config.ca_file:
            handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=config.ca_file)))
        # No proxy from the environment: the operator talks to an in-cluster (or loopback) Prometheus directly.
        self._opener = urllib.request.build_opener(*handlers)
        self._base = config.url.rstrip("/")

    def __repr__(self) -> str:
        return f"PrometheusClient({self._base!r}, timeout_s={self.config.timeout_s})"

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "llama-operator"}
        if self.config.authorization:
            headers["Authorization"] = self.config.authorization
        elif self.config.bearer_token_file:
            try:
                token = Path(self.config.bearer_token_file).read_text(encoding="utf-8").strip()
            except OSError as error:
                raise PrometheusUnavailable(
                    f"cannot read the bearer token file {self.config.bearer_token_file}: {error.strerror}"
                ) from None
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _request(self, path: str, form: Mapping[str, str] | None = None) -> tuple[int, bytes]:
        url = f"{self._base}{path}"  # the scheme was checked to be http(s) in PrometheusConfig
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(  # noqa: S310
            url, data=data, headers=self._headers(), method="POST" if data else "GET"
        )
        if data is not None:
            request.add_header("Content-Type", "application/x-www-form-urlencoded")
        where = f"Prometheus at {self._base}"
        try:
            with self._opener.open(request, timeout=self.config.timeout_s) as response:
                return int(response.status), response.read(MAX_BODY)
        except urllib.error.HTTPError as error:
            body = error.read(MAX_BODY) if error.fp is not None else b""
            error.close()
            return int(error.code), body
        except TimeoutError as error:
            raise PrometheusTimeout(f"{where} did not answer within {self.config.timeout_s:g}s") from error
        except urllib.error.URLError as error:
            reason = error.reason
            if isinstance(reason, TimeoutError):
                raise PrometheusTimeout(f"{where} did not answer within {self.config.timeout_s:g}s") from error
            text = reason.strerror if isinstance(reason, OSError) and reason.strerror else str(reason)
            raise PrometheusUnavailable(f"{where} is unreachable: {text}") from error
        except OSError as error:
            raise PrometheusUnavailable(f"{where} is unreachable: {error.strerror or error}") from error

    def _api(self, path: str, form: Mapping[str, str]) -> QueryResult:
        status, body = self._request(path, form)
        if status >= 500 and status not in (503,):
            # 503 with a JSON error body is Prometheus refusing (e.g. a query timeout); others are the server down.
            raise PrometheusUnavailable(f"Prometheus at {self._base} answered HTTP {status}")
        if status in (401, 403):
            raise PrometheusQueryError(
                f"Prometheus at {self._base} refused the credentials (HTTP {status})", status=status
            )
        try:
            decoded = json.loads(body)
        except (ValueError, RecursionError):
            if status >= 300:
                raise PrometheusUnavailable(f"Prometheus at {self._base} answered HTTP {status}") from None
            raise PrometheusResponseError(f"Prometheus at {self._base} sent a body that is not JSON") from None
        try:
            return parse_response(decoded)
        except PrometheusQueryError as error:
            raise PrometheusQueryError(str(error), error.error_type, status) from None

    def query(self, promql: str, at: datetime | float | None = None) -> QueryResult:
        """An instant query (``/api/v1/query``)."""
        form = {"query": promql, "timeout": f"{self.config.timeout_s:g}s"}
        if at is not None:
            form["time"] = _seconds(at)
        return self._api("/api/v1/query", form)

    def query_range(self, promql: str, start: datetime | float, end: datetime | float, step_s: float) -> QueryResult:
        """A range query (``/api/v1/query_range``)."""
        if step_s <= 0:
            raise ValueError("step_s must be positive")
        form = {
            "query": promql,
            "start": _seconds(start),
            "end": _seconds(end),
            "step": f"{step_s:g}",
            "timeout": f"{self.config.timeout_s:g}s",
        }
        return self._api("/api/v1/query_range", form)

    def ready(self) -> bool:
        """Whether Prometheus says it is ready to serve queries."""
        try:
            status, _ = self._request("/-/ready")
        except PrometheusUnavailable:
            return False
        return status == 200

    def crash_loop_metrics(self, namespace: str, pods: Sequence[str], container: str | None = None) -> CrashLoopMetrics:
        """kube-state-metrics' view of these pods' containers, for ``detect_from_metrics``."""
        queries = crash_loop_queries(namespace, pods, container)
        return CrashLoopMetrics(
            restarts=self.query(queries.restarts).samples,
            waiting=self.query(queries.waiting).samples,
            last_terminated_reason=self.query(queries.last_terminated_reason).samples,
            last_terminated_exit_code=self.query(queries.last_terminated_exit_code).samples,
            last_terminated_time=self.query(queries.last_terminated_time).samples,
        )


__all__ = [
    "PrometheusClient",
    "PrometheusConfig",
    "PrometheusError",
    "PrometheusQueryError",
    "PrometheusResponseError",
    "PrometheusTimeout",
    "PrometheusUnavailable",
]
