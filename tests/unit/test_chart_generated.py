"""The chart's generated files (CRD copy, dashboards, rules, the README's values reference) are current, the
dashboard is well formed, and the packaged chart carries its README and metadata."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from charts.generator import dashboards, outputs, values_reference

from llama_operator.api.crd import CRD_FILE
from tests.unit.sandbox_tools import run

ROOT = Path(__file__).resolve().parents[2]
VARIABLES = {"datasource", "namespace", "deployment", "__rate_interval"}


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((outputs.DASHBOARDS / dashboards.FILE).read_text())
    return loaded


def _exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]


def test_generated_files_are_current() -> None:
    stale = outputs.stale(outputs.generated())
    assert stale == [], f"stale: {stale}; run `python -m charts.generator`"


def test_chart_crd_is_the_crds_folder_copy() -> None:
    # Both come from the models (`llama-operator crd --write` and the generator): byte for byte the same.
    assert outputs.CRD.read_text() == (ROOT / "crds" / CRD_FILE).read_text()


def test_check_mode_reports_drift(tmp_path: Path) -> None:
    ok = subprocess.run([sys.executable, "-m", "charts.generator", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    files = outputs.generated()
    changed = {path: text + "# edited\n" for path, text in files.items()}
    assert set(outputs.stale(changed)) == set(files)


def test_dashboard_covers_what_operators_ask_for() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] == dashboards.UID
    text = " ".join(expr for _, expr in _exprs(dashboard))
    for metric in (
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:inter_token_latency_seconds_bucket",
        "vllm:e2e_request_latency_seconds_bucket",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:kv_cache_usage_perc",
        "vllm:num_preemptions_total",
        "vllm:request_success_total",
        "kube_pod_container_status_restarts_total",
        "llamaops_crashes_total",
        "llamaops_remediations_total",
        'llamaops_reconcile_total{result="error"}',
    ):
        assert metric in text, metric
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, sum by (le) (rate(vllm:e2e_request_latency_seconds_bucket" in text
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_queries_use_only_the_dashboard_variables() -> None:
    dashboard = _dashboard()
    declared = {v["name"] for v in dashboard["templating"]["list"]}
    assert declared == VARIABLES - {"__rate_interval"}
    for title, expr in _exprs(dashboard):
        used = set(re.findall(r"\$\{?(\w+)\}?", expr)) - {"1"}
        assert used <= VARIABLES, (title, used)
        if "vllm:" in expr:
            # Serving panels are per LlamaDeployment.
            assert 'namespace="${namespace}", pod=~"${deployment}-[a-z0-9]+-[a-z0-9]+"' in expr, title


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool parses recording-rule expressions: each panel query, variables substituted, becomes one.
    values = {"datasource": "prometheus", "namespace": "serving", "deployment": "scout", "__rate_interval": "1m"}
    rules = [
        {"record": f"panel:{i}", "expr": re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values[m[1] or m[2]], expr)}
        for i, (_, expr) in enumerate(_exprs(_dashboard()))
    ]
    (tmp_path / "panels.yaml").write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    checked = run("promtool", "check", "rules", str(tmp_path / "panels.yaml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules)} rules found" in checked.stdout


def test_the_values_reference_describes_every_value() -> None:
    values = yaml.safe_load((outputs.CHART / "values.yaml").read_text())
    schema = json.loads((outputs.CHART / "values.schema.json").read_text())
    rows = {key: (kind, default, text) for key, kind, default, text in values_reference.rows(schema, values)}
    assert all(text for _, _, text in rows.values()), [key for key, (_, _, text) in rows.items() if not text]

    def leaves(node: Any, prefix: str = "") -> list[str]:
        if not isinstance(node, dict) or not node or prefix in values_reference.PASS_THROUGH:
            return [prefix]
        return [leaf for key, value in node.items() for leaf in leaves(value, f"{prefix}.{key}" if prefix else key)]

    # Every default is in a row, shown as values.yaml has it (maps like podAnnotations are one row).
    for leaf in leaves(values):
        key = next(k for k in sorted(rows, key=len, reverse=True) if leaf == k or leaf.startswith(k + "."))
        if key == leaf:
            assert rows[key][1] == f"`{json.dumps(values_at(values, key), ensure_ascii=False)}`", key
    readme = outputs.README.read_text()
    assert values_reference.table(schema, values) in readme
    assert '| `webhook.failurePolicy` | `Fail` \\| `Ignore` | `"Fail"` |' in readme


def values_at(values: dict[str, Any], key: str) -> Any:
    node: Any = values
    for part in key.split("."):
        node = node[part]
    return node


def test_the_packaged_chart_has_its_readme_and_metadata(tmp_path: Path) -> None:
    shown = run("helm", "show", "readme", str(outputs.CHART))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("# llama-operator")
    assert "## checkov" in shown.stdout
    packaged = run("helm", "package", str(outputs.CHART), "--destination", str(tmp_path))
    assert packaged.returncode == 0, packaged.stderr
    (archive,) = tmp_path.glob("llama-operator-*.tgz")
    assert run("helm", "show", "readme", str(archive)).stdout == shown.stdout
    chart = yaml.safe_load(run("helm", "show", "chart", str(archive)).stdout)
    assert chart["home"] == "https://github.com/llamaops/llama-operator"
    assert chart["sources"] == [chart["home"]]
    # The icon link is the chart's own file as the repository serves it.
    assert chart["icon"].endswith("/charts/llama-operator/icon.svg")
    assert (outputs.CHART / "icon.svg").read_text().startswith("<svg")
    lint = run("helm", "lint", "--strict", str(outputs.CHART))
    assert "icon is recommended" not in lint.stdout
