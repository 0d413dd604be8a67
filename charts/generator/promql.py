"""Metric names and label selectors shared by the dashboards and the alerts.

vLLM's names are those of vLLM 0.32 (vllm/v1/metrics/loggers.py); counters carry the ``_total`` suffix the
Prometheus client adds. Series of a LlamaDeployment are found through the pod name: its pods belong to the
Deployment of the same name, so they are named ``<llamadeployment>-<pod-template-hash>-<suffix>``.
"""

from __future__ import annotations

# vLLM 0.32 (labels: model_name, engine; the scrape adds namespace and pod).
RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
KV_CACHE_USAGE = "vllm:kv_cache_usage_perc"
PREEMPTIONS = "vllm:num_preemptions_total"
PROMPT_TOKENS = "vllm:prompt_tokens_total"
GENERATION_TOKENS = "vllm:generation_tokens_total"
REQUEST_SUCCESS = "vllm:request_success_total"  # label finished_reason: stop, length, abort, error, repetition
TTFT = "vllm:time_to_first_token_seconds"
INTER_TOKEN = "vllm:inter_token_latency_seconds"  # noqa: S105 - a metric name
E2E = "vllm:e2e_request_latency_seconds"

# kube-state-metrics.
RESTARTS = "kube_pod_container_status_restarts_total"
LAST_TERMINATED_REASON = "kube_pod_container_status_last_terminated_reason"
TERMINATED_REASON = "kube_pod_container_status_terminated_reason"
# The serving container of every LlamaDeployment pod (render/deployment.py CONTAINER).
SERVING_CONTAINER = "vllm"

# The operator (handlers/metrics.py; the crash and remediation counters come from the health layer).
RECONCILES = "llamaops_reconcile_total"
RECONCILE_SECONDS = "llamaops_reconcile_duration_seconds"
PHASES = "llamaops_deployments"
FINDINGS = "llamaops_findings"
CRASHES = "llamaops_crashes_total"
REMEDIATIONS = "llamaops_remediations_total"

# A Deployment's pod name: the owner's name, the pod-template hash and a random suffix (PromQL anchors regexes).
POD_SUFFIX = "-[a-z0-9]+-[a-z0-9]+"
POD_NAME_REGEX = "(.+)" + POD_SUFFIX


def pods_of(deployment: str, namespace: str) -> str:
    """Label matchers for the pods of one LlamaDeployment (values may be dashboard variables)."""
    return f'namespace="{namespace}", pod=~"{deployment}{POD_SUFFIX}"'


def with_deployment_label(expr: str) -> str:
    """Add a ``llamadeployment`` label taken from the pod name, for rules that aggregate per LlamaDeployment."""
    return f'label_replace({expr}, "llamadeployment", "$1", "pod", "{POD_NAME_REGEX}")'
