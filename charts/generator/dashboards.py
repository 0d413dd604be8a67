"""The Grafana dashboard of LlamaDeployments, as code (grafana-foundation-sdk).

One dashboard, chosen by namespace and LlamaDeployment: traffic, latency, tokens and KV cache from vLLM; restarts,
termination reasons, crash signatures and remediations; the operator's reconciles. Every query uses only the
dashboard variables ($datasource, $namespace, $deployment) and Grafana's $__rate_interval, so a test can
substitute them and run each query against Prometheus (tests/integration/test_chart_dashboards.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from charts.generator import promql as m
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model

UID = "llamaops-serving"
FILE = "llama-serving.json"
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "$__rate_interval"
SELECTED = m.pods_of("${deployment}", "${namespace}")
QUANTILES = (0.5, 0.95, 0.99)
SERVING = m.SERVING_CONTAINER


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


def _panel(title: str, description: str, unit: str, queries: list[Query], width: int = 12) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(8)
        .fill_opacity(10)
    )
    for ref, query in zip("ABCDEFGH", queries, strict=False):
        panel = panel.with_target(
            prometheus.Dataquery().ref_id(ref).expr(query.expr).legend_format(query.legend).datasource(DATASOURCE)
        )
    return panel


def _quantiles(metric: str) -> list[Query]:
    return [
        Query(
            f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket{{{SELECTED}}}[{RATE}])))",
            f"p{round(q * 100)}",
        )
        for q in QUANTILES
    ]


def _variables() -> list[cogbuilder.Builder[model.VariableModel]]:
    datasource = dash.DatasourceVariable("datasource").label("Data source").type("prometheus")
    # Namespaces and LlamaDeployments from kube-state-metrics' container info: a deployment whose pods crash
    # before vLLM exports anything is still listed. Pod names carry the LlamaDeployment's name (see promql.py).
    namespace = (
        dash.QueryVariable("namespace")
        .label("Namespace")
        .datasource(DATASOURCE)
        .query(f'label_values(kube_pod_container_info{{container="{m.SERVING_CONTAINER}"}}, namespace)')
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
    )
    deployment = (
        dash.QueryVariable("deployment")
        .label("LlamaDeployment")
        .datasource(DATASOURCE)
        .query(f'label_values(kube_pod_container_info{{namespace="${{namespace}}", container="{SERVING}"}}, pod)')
        .regex(f"/^{m.POD_NAME_REGEX}$/")
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
    )
    return [datasource, namespace, deployment]


def _traffic() -> list[timeseries.Panel]:
    return [
        _panel(
            "Requests running and waiting",
            "Requests in the engine's batches and in its queue, per pod (vllm:num_requests_running, _waiting).",
            "short",
            [
                Query(f"sum by (pod) ({m.RUNNING}{{{SELECTED}}})", "running {{pod}}"),
                Query(f"sum by (pod) ({m.WAITING}{{{SELECTED}}})", "waiting {{pod}}"),
            ],
        ),
        _panel(
            "Finished requests by reason",
            "Requests finished per second by finish reason: stop, length, abort, error, repetition "
            "(vllm:request_success_total).",
            "reqps",
            [
                Query(
                    f"sum by (finished_reason) (rate({m.REQUEST_SUCCESS}{{{SELECTED}}}[{RATE}]))", "{{finished_reason}}"
                )
            ],
        ),
    ]


def _latency() -> list[timeseries.Panel]:
    return [
        _panel(
            "Time to first token",
            "p50, p95 and p99 of the time from arrival to the first output token (vllm:time_to_first_token_seconds).",
            "s",
            _quantiles(m.TTFT),
            width=8,
        ),
        _panel(
            "Inter-token latency",
            "p50, p95 and p99 of the time between two output tokens (vllm:inter_token_latency_seconds).",
            "s",
            _quantiles(m.INTER_TOKEN),
            width=8,
        ),
        _panel(
            "End-to-end request latency",
            "p50, p95 and p99 of the whole request (vllm:e2e_request_latency_seconds).",
            "s",
            _quantiles(m.E2E),
            width=8,
        ),
    ]


def _engine() -> list[timeseries.Panel]:
    return [
        _panel(
            "Tokens per second",
            "Prompt (prefill) and generated tokens per second (vllm:prompt_tokens_total, "
            "vllm:generation_tokens_total).",
            "short",
            [
                Query(f"sum(rate({m.PROMPT_TOKENS}{{{SELECTED}}}[{RATE}]))", "prompt"),
                Query(f"sum(rate({m.GENERATION_TOKENS}{{{SELECTED}}}[{RATE}]))", "generation"),
            ],
            width=8,
        ),
        _panel(
            "KV-cache usage",
            "Share of the KV cache in use, per pod (vllm:kv_cache_usage_perc; 1 is full). Near 1 with requests "
            "waiting, the engine preempts: see the LlamaKVCacheSaturated alert.",
            "percentunit",
            [Query(f"max by (pod) ({m.KV_CACHE_USAGE}{{{SELECTED}}})", "{{pod}}")],
            width=8,
        ),
        _panel(
            "Preemptions",
            "Requests preempted per second for lack of KV-cache blocks (vllm:num_preemptions_total).",
            "short",
            [Query(f"sum by (pod) (rate({m.PREEMPTIONS}{{{SELECTED}}}[{RATE}]))", "{{pod}}")],
            width=8,
        ),
    ]


def _reliability() -> list[timeseries.Panel]:
    serving = f'{SELECTED}, container="{m.SERVING_CONTAINER}"'
    return [
        _panel(
            "Pod restarts",
            "Restarts of the vLLM container, per pod (kube-state-metrics). A climbing line is a crash loop.",
            "short",
            [Query(f"max by (pod) ({m.RESTARTS}{{{serving}}})", "{{pod}}")],
        ),
        _panel(
            "Last termination reason",
            "Why the vLLM container ended, per pod: its last termination, or its current one before it restarts "
            "(kube-state-metrics: Completed, Error, OOMKilled, ...). A crash the operator repairs within seconds "
            "is replaced before the kubelet restarts it, so only the current termination shows it.",
            "short",
            [
                Query(
                    f"max by (pod, reason) ({m.LAST_TERMINATED_REASON}{{{serving}}} "
                    f"or {m.TERMINATED_REASON}{{{serving}}})",
                    "{{pod}}: {{reason}}",
                )
            ],
        ),
        _panel(
            "Crash signatures",
            "Crashes classified by the operator from termination messages, per signature (cuda_device_assert_*, "
            "cuda_oom, nccl_error, ...).",
            "short",
            [Query(f"sum by (signature) (increase({m.CRASHES}[{RATE}]))", "{{signature}}")],
        ),
        _panel(
            "Remediations",
            "Remediations the operator applied, by action and result.",
            "short",
            [Query(f"sum by (action, result) (increase({m.REMEDIATIONS}[{RATE}]))", "{{action}} {{result}}")],
        ),
    ]


def _operator() -> list[timeseries.Panel]:
    return [
        _panel(
            "Reconciles by result",
            "LlamaDeployment reconciles per second: applied, invalid (a spec with error findings) and error (the "
            "Kubernetes API refused a write; kopf retries).",
            "ops",
            [
                Query(f"sum by (result) (rate({m.RECONCILES}[{RATE}]))", "{{result}}"),
                # 0 rather than "No data" while nothing fails.
                Query(f'sum(rate({m.RECONCILES}{{result="error"}}[{RATE}])) or vector(0)', "errors"),
            ],
            width=8,
        ),
        _panel(
            "Reconcile duration",
            "p95 of one reconcile: validate, render, apply and publish status.",
            "s",
            [
                Query(
                    f"histogram_quantile(0.95, sum by (le) (rate({m.RECONCILE_SECONDS}_bucket[{RATE}])))",
                    "p95",
                )
            ],
            width=8,
        ),
        _panel(
            "LlamaDeployments by phase",
            "Across every namespace the operator watches.",
            "short",
            [Query(f"sum by (phase) ({m.PHASES})", "{{phase}}")],
            width=8,
        ),
    ]


def serving_dashboard() -> dict[str, object]:
    builder = (
        dash.Dashboard("LlamaDeployment serving")
        .uid(UID)
        .description("vLLM serving health of one LlamaDeployment, its crashes and remediations, and the operator.")
        .tags(["llama-operator", "vllm"])
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .editable()
        .variables(_variables())
    )
    ids = iter(range(1, 100))
    for title, panels in (
        ("Traffic", _traffic()),
        ("Latency", _latency()),
        ("Tokens and KV cache", _engine()),
        ("Restarts, crashes and remediations", _reliability()),
        ("Operator", _operator()),
    ):
        builder = builder.with_row(dash.Row(title).id(next(ids)))
        for panel in panels:
            builder = builder.with_panel(panel.id(next(ids)))
    document: dict[str, object] = json.loads(JSONEncoder(sort_keys=True).encode(builder.build()))
    return document


def dashboards() -> dict[str, str]:
    """File name -> dashboard JSON, as the chart ships them."""
    return {FILE: json.dumps(serving_dashboard(), indent=2, sort_keys=True) + "\n"}
