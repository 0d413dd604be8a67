"""The Prometheus client's parser (pure) and its error handling over real loopback sockets: a listener that never
answers (timeout), a closed port (unreachable), and a tiny HTTP server answering what Prometheus answers in error
cases. Queries against the real Prometheus are in tests/integration/test_health_prometheus.py."""

from __future__ import annotations

import contextlib
import json
import math
import socket
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llama_operator.health.prometheus import PrometheusClient, PrometheusConfig
from llama_operator.health.promql import (
    PrometheusError,
    PrometheusQueryError,
    PrometheusResponseError,
    PrometheusTimeout,
    PrometheusUnavailable,
    label_regex_for,
    parse_response,
    quote,
)
from tests.http_stub import serving


def vector(*items: tuple[dict[str, str], str]) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": m, "value": [1700000000.5, v]} for m, v in items]},
    }


def test_parse_vector_with_special_values() -> None:
    result = parse_response(vector(({"pod": "a"}, "3"), ({"pod": "b"}, "NaN"), ({}, "+Inf")))
    assert result.result_type == "vector"
    assert [dict(s.labels) for s in result.samples] == [{"pod": "a"}, {"pod": "b"}, {}]
    assert result.samples[0].value == 3.0
    assert result.samples[0].timestamp == 1700000000.5
    assert math.isnan(result.samples[1].value)
    assert result.samples[2].value == math.inf


def test_parse_matrix_scalar_string_and_warnings() -> None:
    matrix = parse_response(
        {
            "status": "success",
            "warnings": ["careful"],
            "data": {"resultType": "matrix", "result": [{"metric": {"a": "1"}, "values": [[1, "1"], [2, "2"]]}]},
        }
    )
    assert matrix.series[0].points == ((1.0, 1.0), (2.0, 2.0))
    assert matrix.warnings == ("careful",)
    scalar = parse_response({"status": "success", "data": {"resultType": "scalar", "result": [5, "7"]}})
    assert scalar.samples[0].value == 7.0
    string = parse_response({"status": "success", "data": {"resultType": "string", "result": [5, "hi"]}})
    assert string.string == "hi"


def test_parse_api_error() -> None:
    with pytest.raises(PrometheusQueryError) as caught:
        parse_response({"status": "error", "errorType": "bad_data", "error": "parse error at char 4"})
    assert caught.value.error_type == "bad_data"
    assert caught.value.code == "prometheus_query_error"


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {"status": "weird"},
        {"status": "success"},
        {"status": "success", "data": {"resultType": "vector", "result": [{"value": [1]}]}},
        {"status": "success", "data": {"resultType": "vector", "result": [{"value": [1, "x"]}]}},
        {"status": "success", "data": {"resultType": "vector", "result": [{"value": [True, "1"]}]}},
        {"status": "success", "data": {"resultType": "matrix", "result": [3]}},
        {"status": "success", "data": {"resultType": "histogram", "result": []}},
    ],
)
def test_parse_rejects_what_is_not_a_response(body: Any) -> None:
    with pytest.raises(PrometheusResponseError):
        parse_response(body)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(
            st.sampled_from(["status", "data", "resultType", "result", "metric", "value", "values", "warnings"]),
            children,
            max_size=4,
        ),
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(body=json_values)
def test_parse_raises_only_its_own_errors(body: Any) -> None:
    # Anything else (KeyError, TypeError, ...) fails the test.
    with contextlib.suppress(PrometheusError):
        parse_response(body)


def test_quote_and_regex() -> None:
    assert quote('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'
    assert label_regex_for(["b.x", "a", "a"]) == "a|b\\.x"


def test_config_from_env() -> None:
    assert PrometheusConfig.from_env({}) is None
    config = PrometheusConfig.from_env(
        {
            "LLAMAOPS_PROMETHEUS_URL": "http://127.0.0.1:9090",
            "LLAMAOPS_PROMETHEUS_TIMEOUT": "2.5s",
            "LLAMAOPS_PROMETHEUS_AUTHORIZATION": "Bearer s3cret",
        }
    )
    assert config is not None
    assert (config.url, config.timeout_s, config.authorization) == ("http://127.0.0.1:9090", 2.5, "Bearer s3cret")
    assert "s3cret" not in repr(config)
    assert "s3cret" not in repr(PrometheusClient(config))
    with pytest.raises(ValueError, match="TIMEOUT"):
        PrometheusConfig.from_env({"LLAMAOPS_PROMETHEUS_URL": "http://x", "LLAMAOPS_PROMETHEUS_TIMEOUT": "soon"})
    with pytest.raises(ValueError, match="http"):
        PrometheusConfig("file:///etc/passwd")
    with pytest.raises(ValueError, match="positive"):
        PrometheusConfig("http://x", timeout_s=0)


# --- error paths over loopback ---


class Answer(BaseHTTPRequestHandler):
    """Answers each request with the status and body queued for its path; records what it was sent."""

    answers: ClassVar[dict[str, tuple[int, bytes]]] = {}
    seen: ClassVar[list[dict[str, Any]]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        path = self.path.split("?")[0]
        self.seen.append({"method": self.command, "path": path, "headers": dict(self.headers), "body": body})
        status, payload = self.answers.get(path, (404, b"not found"))
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def server() -> Iterator[str]:
    Answer.answers, Answer.seen = {}, []
    with serving(Answer) as url:
        yield url


def client(url: str, **config: Any) -> PrometheusClient:
    return PrometheusClient(PrometheusConfig(url, **config))


def test_query_sends_a_form_post_with_the_auth_header(server: str) -> None:
    Answer.answers["/api/v1/query"] = (200, json.dumps(vector(({"pod": "a"}, "1"))).encode())
    result = client(server, authorization="Bearer s3cret").query('up{job="x"}', at=1700000000)
    assert result.samples[0].value == 1.0
    (request,) = Answer.seen
    assert request["method"] == "POST"
    assert request["headers"]["Authorization"] == "Bearer s3cret"
    assert "query=up%7Bjob%3D%22x%22%7D" in request["body"]
    assert "time=1700000000.000" in request["body"]


def test_bearer_token_file_is_read_per_request(server: str, tmp_path: Path) -> None:
    Answer.answers["/api/v1/query"] = (200, json.dumps(vector()).encode())
    token = tmp_path / "token"
    token.write_text("one\n")
    prometheus = client(server, bearer_token_file=str(token))
    prometheus.query("up")
    token.write_text("two")
    prometheus.query("up")
    assert [r["headers"]["Authorization"] for r in Answer.seen] == ["Bearer one", "Bearer two"]
    token.unlink()
    with pytest.raises(PrometheusUnavailable, match="bearer token file"):
        prometheus.query("up")


def test_bad_query_is_a_query_error(server: str) -> None:
    error = {"status": "error", "errorType": "bad_data", "error": "1:5: parse error"}
    Answer.answers["/api/v1/query"] = (400, json.dumps(error).encode())
    with pytest.raises(PrometheusQueryError) as caught:
        client(server).query("up{")
    assert (caught.value.status, caught.value.error_type) == (400, "bad_data")


def test_refused_credentials(server: str) -> None:
    Answer.answers["/api/v1/query"] = (401, b"Unauthorized")
    with pytest.raises(PrometheusQueryError, match="credentials"):
        client(server, authorization="Bearer wrong").query("up")


@pytest.mark.parametrize(("status", "body"), [(502, b"<html>bad gateway</html>"), (503, b"<html>down</html>")])
def test_proxy_errors_are_unavailable(server: str, status: int, body: bytes) -> None:
    Answer.answers["/api/v1/query"] = (status, body)
    with pytest.raises(PrometheusUnavailable):
        client(server).query("up")


def test_not_json_is_a_response_error(server: str) -> None:
    Answer.answers["/api/v1/query"] = (200, b"<html>login</html>")
    with pytest.raises(PrometheusResponseError):
        client(server).query("up")


def test_ready(server: str) -> None:
    prometheus = client(server)
    assert not prometheus.ready()
    Answer.answers["/-/ready"] = (200, b"Prometheus Server is Ready.")
    assert prometheus.ready()


def test_unreachable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens there now.
    prometheus = client(f"http://127.0.0.1:{port}", timeout_s=2)
    with pytest.raises(PrometheusUnavailable, match="unreachable") as caught:
        prometheus.query("up")
    assert not isinstance(caught.value, PrometheusTimeout)
    assert not prometheus.ready()


def test_timeout() -> None:
    # A listener that accepts connections and never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        prometheus = client(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout_s=0.3)
        with pytest.raises(PrometheusTimeout, match=r"within 0\.3s") as caught:
            prometheus.query("up")
    assert caught.value.code == "prometheus_timeout"
