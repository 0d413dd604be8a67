"""The chart's Prometheus rules: promtool checks them and runs unit tests of every alert (firing and quiet)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from charts.generator import alerts

from tests.unit.sandbox_tools import run

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "charts" / "llama-operator" / "files" / "alerts" / alerts.FILE
POD = "scout-5d8f7c9b4-x2k4q"
SERVING = {"namespace": "serving", "pod": POD, "model_name": "meta-llama/Llama-4-Scout-17B-16E-Instruct", "engine": "0"}


def _rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def _alert(name: str) -> dict[str, Any]:
    return next(rule for rule in _rules() if rule.get("alert") == name)


def _go_float(value: float) -> str:
    text = f"{value:.4g}"
    return text[:-2] if text.endswith(".0") else text


def expand(template: str, labels: dict[str, str], value: float) -> str:
    """The subset of Prometheus alert templating the rules use, to state exactly what an alert says."""

    def one(match: re.Match[str]) -> str:
        expr = match[1].strip()
        if expr.startswith("$labels."):
            return labels[expr.removeprefix("$labels.")]
        if expr == "$value":
            return _go_float(value)
        if expr == "$value | humanize":
            return _go_float(value)
        if expr == "$value | humanizePercentage":
            return _go_float(value * 100) + "%"
        raise AssertionError(f"template {expr!r} not handled by this test")

    return re.sub(r"\{\{(.+?)\}\}", one, template)


def expected(name: str, labels: dict[str, str], value: float) -> dict[str, Any]:
    rule = _alert(name)
    all_labels = {**labels, **rule["labels"]}
    return {
        "exp_labels": all_labels,
        "exp_annotations": {k: expand(v, all_labels, value) for k, v in rule["annotations"].items()},
    }


def series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


def ttft(good_per_min: int, total_per_min: int, minutes: int) -> list[dict[str, str]]:
    return [
        series("vllm:time_to_first_token_seconds_bucket", {**SERVING, "le": "2.5"}, f"0+{good_per_min}x{minutes}"),
        series("vllm:time_to_first_token_seconds_bucket", {**SERVING, "le": "+Inf"}, f"0+{total_per_min}x{minutes}"),
        series("vllm:time_to_first_token_seconds_count", SERVING, f"0+{total_per_min}x{minutes}"),
    ]


SLO_LABELS = {"namespace": "serving", "llamadeployment": "scout"}
SLO_SELECTOR = '{namespace="serving", llamadeployment="scout"}'
CRASH = {"job": "llama-operator", "signature": "cuda_device_assert_embedding_oov"}
OOM = {"job": "llama-operator", "signature": "cuda_oom"}


def cases() -> list[dict[str, Any]]:
    return [
        {
            "name": "crashes classified as CUDA asserts page; other signatures do not",
            "input_series": [
                series("llamaops_crashes_total", CRASH, "5+1x30"),
                series("llamaops_crashes_total", OOM, "5+1x30"),
            ],
            "alert_rule_test": [
                {
                    "eval_time": "20m",
                    "alertname": "LlamaCUDAAssertCrashLoop",
                    "exp_alerts": [expected("LlamaCUDAAssertCrashLoop", CRASH, 15)],
                },
            ],
        },
        {
            "name": "one CUDA assert is not a loop",
            "input_series": [series("llamaops_crashes_total", CRASH, "5x10 6x20")],
            "alert_rule_test": [{"eval_time": "20m", "alertname": "LlamaCUDAAssertCrashLoop", "exp_alerts": []}],
        },
        {
            "name": "a Failed deployment means remediation is exhausted",
            "input_series": [series("llamaops_deployments", {"phase": "Failed"}, "0x5 1x20")],
            "alert_rule_test": [
                {"eval_time": "5m", "alertname": "LlamaRemediationExhausted", "exp_alerts": []},
                {
                    "eval_time": "10m",
                    "alertname": "LlamaRemediationExhausted",
                    "exp_alerts": [expected("LlamaRemediationExhausted", {}, 1)],
                },
            ],
        },
        {
            "name": "Degraded alerts after 15 minutes, not before",
            "input_series": [
                series("llamaops_deployments", {"phase": "Degraded"}, "1x30"),
                series("llamaops_deployments", {"phase": "Running"}, "3x30"),
            ],
            "alert_rule_test": [
                {"eval_time": "10m", "alertname": "LlamaDeploymentDegraded", "exp_alerts": []},
                {
                    "eval_time": "20m",
                    "alertname": "LlamaDeploymentDegraded",
                    "exp_alerts": [expected("LlamaDeploymentDegraded", {}, 1)],
                },
            ],
        },
        {
            "name": "a full KV cache with a queue saturates; full without a queue does not",
            "input_series": [
                series("vllm:kv_cache_usage_perc", SERVING, "0.95x30"),
                series("vllm:num_requests_waiting", SERVING, "3x30"),
                series("vllm:kv_cache_usage_perc", {**SERVING, "pod": "idle-5d8f7c9b4-abcde"}, "0.97x30"),
                series("vllm:num_requests_waiting", {**SERVING, "pod": "idle-5d8f7c9b4-abcde"}, "0x30"),
            ],
            "alert_rule_test": [
                {"eval_time": "5m", "alertname": "LlamaKVCacheSaturated", "exp_alerts": []},
                {
                    "eval_time": "15m",
                    "alertname": "LlamaKVCacheSaturated",
                    "exp_alerts": [
                        expected(
                            "LlamaKVCacheSaturated",
                            {"namespace": "serving", "pod": POD, "llamadeployment": "scout"},
                            1,
                        )
                    ],
                },
            ],
        },
        {
            "name": "half the requests slow: both burn rates fire, and the ratio is recorded per LlamaDeployment",
            "input_series": ttft(5, 10, 400),
            "promql_expr_test": [
                {
                    "expr": "llamaops:ttft_slo_violations:ratio_rate5m",
                    "eval_time": "30m",
                    "exp_samples": [
                        {"labels": f"llamaops:ttft_slo_violations:ratio_rate5m{SLO_SELECTOR}", "value": 0.5}
                    ],
                }
            ],
            "alert_rule_test": [
                {
                    "eval_time": "70m",
                    "alertname": "LlamaTTFTBudgetBurnFast",
                    "exp_alerts": [expected("LlamaTTFTBudgetBurnFast", SLO_LABELS, 0.5)],
                },
                {
                    "eval_time": "380m",
                    "alertname": "LlamaTTFTBudgetBurnSlow",
                    "exp_alerts": [expected("LlamaTTFTBudgetBurnSlow", SLO_LABELS, 0.5)],
                },
            ],
        },
        {
            "name": "within the objective nothing burns",
            "input_series": ttft(10, 10, 400),
            "alert_rule_test": [
                {"eval_time": "70m", "alertname": "LlamaTTFTBudgetBurnFast", "exp_alerts": []},
                {"eval_time": "380m", "alertname": "LlamaTTFTBudgetBurnSlow", "exp_alerts": []},
            ],
        },
    ]


def test_promtool_checks_the_rules() -> None:
    checked = run("promtool", "check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in checked.stdout


def test_promtool_unit_tests_every_alert(tmp_path: Path) -> None:
    tests = {"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": cases()}
    for test in tests["tests"]:
        test["interval"] = "1m"
    alerts_tested = {t["alertname"] for case in cases() for t in case.get("alert_rule_test", [])}
    assert alerts_tested == {r["alert"] for r in _rules() if "alert" in r}
    (tmp_path / "alerts_test.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    tested = run("promtool", "test", "rules", str(tmp_path / "alerts_test.yaml"))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    # The harness itself: an alert expected where none fires must fail promtool.
    wrong = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [series("llamaops_deployments", {"phase": "Degraded"}, "0x30")],
                "alert_rule_test": [
                    {
                        "eval_time": "20m",
                        "alertname": "LlamaDeploymentDegraded",
                        "exp_alerts": [expected("LlamaDeploymentDegraded", {}, 1)],
                    }
                ],
            }
        ],
    }
    (tmp_path / "wrong_test.yaml").write_text(yaml.safe_dump(wrong))
    assert run("promtool", "test", "rules", str(tmp_path / "wrong_test.yaml")).returncode != 0


@pytest.mark.parametrize("rule", [r for r in _rules() if "alert" in r], ids=lambda r: r["alert"])
def test_every_alert_has_severity_summary_description_and_a_runbook_in_the_repo(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in ("critical", "warning", "info")
    assert rule["annotations"]["summary"]
    assert rule["annotations"]["description"]
    url = rule["annotations"]["runbook_url"]
    assert url.startswith(f"{alerts.RUNBOOK_BASE}/docs/runbooks/")
    page = ROOT / url.removeprefix(f"{alerts.RUNBOOK_BASE}/")
    assert page.is_file(), f"{rule['alert']}: {page} is missing"
    assert rule["alert"].removesuffix("Fast").removesuffix("Slow") in page.read_text()
