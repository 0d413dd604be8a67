"""The PromQL of autoscaling's vLLM signals for one LlamaDeployment (pure).

vLLM's series carry no label of the LlamaDeployment: the scrape adds ``namespace`` and ``pod`` (the pod annotations
render/deployment.py writes), so a deployment's pods are found by name, as the chart's dashboards and alerts find
them: its Deployment's pods are ``<name>-<pod-template-hash>-<suffix>``, a progressive rollout's canary's
``<name>-canary-<hash>-<suffix>``, a LeaderWorkerSet's leaders ``<name>-<group>``.

Each query answers one series, as KEDA's Prometheus scaler wants (it reads an empty answer or NaN as 0):
- RequestsWaiting: the requests queued in all the pods; with metricType AverageValue the HPA wants
  ceil(sum / target) replicas.
- KVCacheUsage: the pods' KV-cache fractions summed (each pod's engines averaged), likewise AverageValue.
- TimeToFirstToken: the deployment's p90 over the window. A latency does not add up over replicas, so it is a
  Value: the HPA wants ceil(replicas x p90 / target).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from llama_operator.api.autoscaling import AutoscalingSpec
from llama_operator.health.promql import label_regex_for, quote
from llama_operator.knowledge.issues import parse_version

WAITING = "vllm:num_requests_waiting"
# vLLM 0.9 renamed vllm:gpu_cache_usage_perc (its v1/metrics/loggers.py: "Deprecated in 0.9 - Renamed as
# vllm:kv_cache_usage_perc"); 0.11 hides the old name behind --show-hidden-metrics-for-version, 0.14 drops it.
KV_CACHE = "vllm:kv_cache_usage_perc"
KV_CACHE_BEFORE_0_9 = "vllm:gpu_cache_usage_perc"
TTFT = "vllm:time_to_first_token_seconds"
TTFT_QUANTILE = 0.9
MetricType = Literal["AverageValue", "Value"]


@dataclass(frozen=True, slots=True)
class Signal:
    """A KEDA Prometheus trigger's query and how the HPA reads its value."""

    query: str
    metric_type: MetricType


def pod_regex(name: str) -> str:
    """The names of a LlamaDeployment's pods (RE2, anchored by Prometheus)."""
    own = label_regex_for([name])
    return f"{own}-(canary-)?[a-z0-9]+-[a-z0-9]+|{own}-[0-9]+"


def selector(namespace: str, name: str) -> str:
    return f"namespace={quote(namespace)},pod=~{quote(pod_regex(name))}"


def kv_cache_metric(vllm_version: str) -> str:
    """The KV-cache gauge the vLLM release exports."""
    version = parse_version(vllm_version)
    # An unparsable version (a build's own tag) is taken for a recent one.
    return KV_CACHE_BEFORE_0_9 if version is not None and version.release < (0, 9) else KV_CACHE


def signal(spec: AutoscalingSpec, namespace: str, name: str, vllm_version: str) -> Signal:
    pods = selector(namespace, name)
    if spec.metric == "RequestsWaiting":
        return Signal(f"sum({WAITING}{{{pods}}})", "AverageValue")
    if spec.metric == "KVCacheUsage":
        return Signal(f"sum(avg by (pod) ({kv_cache_metric(vllm_version)}{{{pods}}}))", "AverageValue")
    rate = f"rate({TTFT}_bucket{{{pods}}}[{spec.window}])"
    return Signal(f"histogram_quantile({TTFT_QUANTILE}, sum by (le) ({rate}))", "Value")
