"""Prometheus HTTP API shapes: typed results, the response parser, PromQL quoting and the client's errors (pure;
the I/O lives in prometheus.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

ResultType = Literal["vector", "matrix", "scalar", "string"]


class PrometheusError(Exception):
    """Base of every error the Prometheus client raises; ``code`` is a stable snake_case identifier."""

    code = "prometheus_error"


class PrometheusUnavailable(PrometheusError):
    """Prometheus could not be reached or did not answer (connection refused, DNS, TLS, HTTP 5xx)."""

    code = "prometheus_unavailable"


class PrometheusTimeout(PrometheusUnavailable):
    """No answer within the client's timeout."""

    code = "prometheus_timeout"


class PrometheusQueryError(PrometheusError):
    """Prometheus answered with an API error (a bad query, HTTP 400/422, or an auth failure)."""

    code = "prometheus_query_error"

    def __init__(self, message: str, error_type: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.status = status


class PrometheusResponseError(PrometheusError):
    """The answer is not a Prometheus API response."""

    code = "prometheus_bad_response"


@dataclass(frozen=True, slots=True)
class Sample:
    """One element of an instant vector (or a scalar, with no labels)."""

    labels: Mapping[str, str]
    value: float
    timestamp: float


@dataclass(frozen=True, slots=True)
class Series:
    """One element of a range vector: (timestamp, value) points, oldest first."""

    labels: Mapping[str, str]
    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True, slots=True)
class QueryResult:
    """A successful query: vector and scalar results in ``samples``, matrix results in ``series``."""

    result_type: ResultType
    samples: tuple[Sample, ...] = ()
    series: tuple[Series, ...] = ()
    string: str | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)


def _fail(what: str) -> PrometheusResponseError:
    return PrometheusResponseError(f"not a Prometheus API response: {what}")


def _value(pair: object) -> tuple[float, float]:
    """A [<unix time>, "<value>"] pair; values are strings so NaN and +Inf survive JSON."""
    if not isinstance(pair, list | tuple) or len(pair) != 2:
        raise _fail(f"expected [time, value], got {type(pair).__name__}")
    moment, text = pair
    if isinstance(moment, bool) or not isinstance(moment, int | float) or not isinstance(text, str):
        raise _fail("expected a number and a string in [time, value]")
    try:
        return float(moment), float(text)
    except ValueError as error:
        raise _fail(f"value {text[:40]!r} is not a number") from error


def _labels(metric: object) -> dict[str, str]:
    if not isinstance(metric, Mapping):
        raise _fail("metric labels are not an object")
    return {str(key): str(value) for key, value in metric.items()}


def parse_response(body: object) -> QueryResult:
    """The ``/api/v1/query`` or ``/api/v1/query_range`` JSON body, typed. Raises PrometheusQueryError for an API
    error, PrometheusResponseError for anything else that is not a success."""
    if not isinstance(body, Mapping):
        raise _fail("the body is not a JSON object")
    status = body.get("status")
    if status == "error":
        error_type, error = body.get("errorType"), body.get("error")
        raise PrometheusQueryError(
            f"Prometheus refused the query: {error_type}: {error}"[:1000], error_type=str(error_type or "")
        )
    if status != "success":
        raise _fail(f"status {str(status)[:40]!r}")
    data = body.get("data")
    if not isinstance(data, Mapping):
        raise _fail("no data object")
    warnings = body.get("warnings")
    notes = tuple(str(w) for w in warnings) if isinstance(warnings, list) else ()
    kind, result = data.get("resultType"), data.get("result")
    if kind == "vector" and isinstance(result, list):
        samples = []
        for item in result:
            if not isinstance(item, Mapping):
                raise _fail("a vector element is not an object")
            moment, value = _value(item.get("value"))
            samples.append(Sample(_labels(item.get("metric", {})), value, moment))
        return QueryResult("vector", samples=tuple(samples), warnings=notes)
    if kind == "matrix" and isinstance(result, list):
        series = []
        for item in result:
            if not isinstance(item, Mapping) or not isinstance(item.get("values", []), list):
                raise _fail("a matrix element is not an object with values")
            points = tuple((t, v) for t, v in (_value(p) for p in item.get("values", [])))
            series.append(Series(_labels(item.get("metric", {})), points))
        return QueryResult("matrix", series=tuple(series), warnings=notes)
    if kind == "scalar":
        moment, value = _value(result)
        return QueryResult("scalar", samples=(Sample({}, value, moment),), warnings=notes)
    if kind == "string" and isinstance(result, list) and len(result) == 2 and isinstance(result[1], str):
        return QueryResult("string", string=result[1], warnings=notes)
    raise _fail(f"resultType {str(kind)[:40]!r} with a {type(result).__name__} result")


def quote(value: str) -> str:
    """A PromQL string literal."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


_RE2_SPECIAL = frozenset("\\.+*?()|[]{}^$")


def label_regex_for(values: Iterable[str]) -> str:
    """A regular expression (RE2, anchored by Prometheus) matching exactly these label values. With none, one
    that matches nothing."""
    names = sorted({value for value in values})
    if not names:
        return r"[^\s\S]"
    return "|".join("".join("\\" + c if c in _RE2_SPECIAL else c for c in name) for name in names)


def namespace_regex(patterns: Iterable[str]) -> str | None:
    """A regular expression (RE2, anchored by Prometheus) for the namespaces kopf's ``--namespace`` patterns watch:
    comma-separated globs with ``*`` and ``?``, exclusions starting with ``!`` (a first exclusion implies ``*``).
    Exclusions are left out, so it may match more than is watched; None when it would match every namespace (no
    patterns: the operator watches all)."""
    globs: set[str] = set()
    for pattern in patterns:
        parts = [part.strip() for part in pattern.split(",") if part.strip()]
        if not parts or parts[0].startswith("!"):
            return None
        globs.update(part for part in parts if not part.startswith("!"))
    if not globs or "*" in globs:
        return None
    special = {"*": ".*", "?": "."}
    return "|".join(
        "".join(special.get(c, "\\" + c if c in _RE2_SPECIAL else c) for c in glob) for glob in sorted(globs)
    )
