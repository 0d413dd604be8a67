"""The Prometheus alerting and recording rules, as a plain rules file (promtool) that the chart wraps in a
PrometheusRule.

Every alert has a severity label, a summary, a description and a runbook_url into docs/runbooks/ (the chart can
point RUNBOOK_BASE elsewhere: prometheusRule.runbookBaseUrl).
"""

from __future__ import annotations

from typing import Any

import yaml
from charts.generator import promql as m

FILE = "llama-operator.rules.yaml"
RUNBOOK_BASE = "https://github.com/llamaops/llama-operator/blob/main"
RUNBOOK_DIR = "docs/runbooks"

# TTFT SLO: 99% of requests get their first token within 2.5 s (a bucket bound of vLLM's TTFT histogram).
TTFT_OBJECTIVE = 0.99
TTFT_THRESHOLD_LE = "2.5"
# Multi-window, multi-burn-rate alerts (Google SRE workbook, ch. 5): the long window proves the budget is burning,
# the short one that it still is. 14.4x over 1 h spends 2% of a 30-day budget; 6x over 6 h spends 5%.
BURN_WINDOWS = (("fast", "1h", "5m", 14.4, "critical", "2m"), ("slow", "6h", "30m", 6.0, "warning", "15m"))
KV_CACHE_SATURATED = 0.9
CUDA_ASSERT_SIGNATURES = "cuda_device_assert.*"
CUDA_ASSERT_CRASHES = 2


def runbook(name: str) -> str:
    return f"{RUNBOOK_BASE}/{RUNBOOK_DIR}/{name}.md"


def _ttft_ratio_record(window: str) -> dict[str, Any]:
    by = "sum by (namespace, llamadeployment)"
    good = m.with_deployment_label(f'rate({m.TTFT}_bucket{{le="{TTFT_THRESHOLD_LE}"}}[{window}])')
    total = m.with_deployment_label(f"rate({m.TTFT}_count[{window}])")
    return {
        "record": f"llamaops:ttft_slo_violations:ratio_rate{window}",
        "expr": f"1 - ({by} ({good}) / {by} ({total}))",
    }


def _ttft_burn(speed: str, long: str, short: str, factor: float, severity: str, wait: str) -> dict[str, Any]:
    budget = round(1 - TTFT_OBJECTIVE, 6)
    threshold = round(factor * budget, 6)
    return {
        "alert": f"LlamaTTFTBudgetBurn{speed.capitalize()}",
        "expr": (
            f"llamaops:ttft_slo_violations:ratio_rate{long} > {threshold}\n"
            f"and\nllamaops:ttft_slo_violations:ratio_rate{short} > {threshold}"
        ),
        "for": wait,
        "labels": {"severity": severity, "slo": "ttft"},
        "annotations": {
            "summary": "LlamaDeployment {{ $labels.namespace }}/{{ $labels.llamadeployment }} is burning its "
            f"time-to-first-token error budget {factor:g}x too fast",
            "description": f"{{{{ $value | humanizePercentage }}}} of requests over the last {long} (and {short}) "
            f"waited more than {TTFT_THRESHOLD_LE} s for their first token; the objective allows "
            f"{budget:.0%}. At this rate the 30-day budget is gone in {30 / factor:.1f} days.",
            "runbook_url": runbook("ttft-slo-burn"),
        },
    }


def rules() -> dict[str, Any]:
    kv = m.with_deployment_label(
        f"(max by (namespace, pod) ({m.KV_CACHE_USAGE}) > {KV_CACHE_SATURATED})\n"
        f"and on (namespace, pod)\n(sum by (namespace, pod) ({m.WAITING}) > 0)"
    )
    alerts: list[dict[str, Any]] = [
        {
            "alert": "LlamaCUDAAssertCrashLoop",
            "expr": f'increase({m.CRASHES}{{signature=~"{CUDA_ASSERT_SIGNATURES}"}}[15m]) >= {CUDA_ASSERT_CRASHES}',
            "for": "1m",
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": "vLLM is crash-looping on a CUDA device-side assert ({{ $labels.signature }})",
                "description": "The operator classified {{ $value | humanize }} crashes as {{ $labels.signature }} "
                "in the last 15 minutes. A device-side assert kills the CUDA context: every restart that meets the "
                "same input or configuration dies the same way. Unless remediation is Off, the operator is "
                "applying the matching remedy; see the LlamaDeployment's status.remediations.",
                "runbook_url": runbook("cuda-assert-crash-loop"),
            },
        },
        {
            "alert": "LlamaRemediationExhausted",
            "expr": f'max({m.PHASES}{{phase="Failed"}}) > 0',
            "for": "1m",
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": "{{ $value }} LlamaDeployment(s) used up their remediations and are Failed",
                "description": "The operator tried every remedy it has (or maxAttempts within the window) and the "
                "pods still crash. It changes nothing more until the spec changes. `kubectl get llama -A` shows "
                "which; their status.remediations and CrashLooping condition say what was tried.",
                "runbook_url": runbook("remediation-exhausted"),
            },
        },
        {
            "alert": "LlamaDeploymentDegraded",
            "expr": f'max({m.PHASES}{{phase="Degraded"}}) > 0',
            "for": "15m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "{{ $value }} LlamaDeployment(s) have been Degraded for 15 minutes",
                "description": "Fewer serving replicas are available than requested. `kubectl get llama -A` shows "
                "which; the Degraded condition says why (unschedulable GPUs, failing probes, a rollout stuck).",
                "runbook_url": runbook("deployment-degraded"),
            },
        },
        {
            "alert": "LlamaKVCacheSaturated",
            "expr": kv,
            "for": "10m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "KV cache of {{ $labels.namespace }}/{{ $labels.pod }} is full with requests waiting",
                "description": f"KV-cache usage has stayed above {KV_CACHE_SATURATED:.0%} while requests queue for "
                "10 minutes: the engine preempts and recomputes, latency climbs. Add replicas, lower maxNumSeqs "
                "or maxModelLen, or give the cache more memory.",
                "runbook_url": runbook("kv-cache-saturation"),
            },
        },
        *(_ttft_burn(*window) for window in BURN_WINDOWS),
    ]
    windows = sorted({w for _, long, short, *_ in BURN_WINDOWS for w in (long, short)}, key=_seconds)
    return {
        "groups": [
            {
                "name": "llama-operator.ttft-slo",
                "interval": "30s",
                "rules": [_ttft_ratio_record(window) for window in windows],
            },
            {"name": "llama-operator.alerts", "rules": alerts},
        ]
    }


def _seconds(window: str) -> int:
    return int(window[:-1]) * {"s": 1, "m": 60, "h": 3600}[window[-1]]


class _Dumper(yaml.SafeDumper):
    """Multi-line expressions as literal blocks, so the file reads like hand-written rules."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def rules_yaml() -> str:
    header = "# Generated by `python -m charts.generator` from charts/generator/alerts.py: do not edit.\n"
    return header + yaml.dump(rules(), Dumper=_Dumper, sort_keys=False, width=120)
