"""Every query of the chart's dashboard, run against the sandbox Prometheus scraping real sources.

- vLLM: a real vLLM CPU server (the engine venv, images/vllm/scripts/engine-venv.sh) serving the tiny random
  Llama-4 of tests/engine on 127.0.0.1, sent real completions. Prometheus scrapes it through the sandbox's file_sd
  job, labelled with the namespace and pod name of the LlamaDeployment pod it stands in for: that pod is a KWOK
  fake with no process behind it, so the local server plays its container, with the labels a pod scrape gives.
- kube-state-metrics: that pod is made by a real operator from a LlamaDeployment whose pod template asks the
  sandbox's KWOK crash-loop stage to crash it, so its restarts and last termination reason are real series.
- the operator: a real `llama-operator run` process, also scraped through file_sd. It detects and classifies that
  crash loop (remediation Off: the pod, and so its name, stays); a second LlamaDeployment crashes like vllm#16274
  on the upstream 0.8.3 image, which the operator remedies (the patched image), so crash signatures and
  remediations are real; a third clashes with a Deployment someone else made (its selector is immutable), so
  reconcile errors are real too.

Then each panel's PromQL, with the dashboard's variables substituted, must succeed and return at least one
series with a number in it; the variable queries must list the namespace and the LlamaDeployment.
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.integration.conftest import Sandbox, make_namespace, wait_for
from tests.integration.llamas import GROUP, PLURAL, VERSION, example
from tests.integration.operator_process import OperatorProcess
from tests.integration.vllm_engine import Vllm, file_sd

pytestmark = pytest.mark.integration
__all__ = ["file_sd"]  # the fixture

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "charts" / "llama-operator" / "files" / "dashboards" / "llama-serving.json"
SERVING, REMEDIED, CLASH = "tiny", "remedied", "clash"
UPSTREAM_083 = "docker.io/vllm/vllm-openai:v0.8.3"
RATE_INTERVAL = "1m"


def query(sandbox: Sandbox, promql: str) -> dict[str, Any]:
    url = f"{sandbox.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            body: dict[str, Any] = json.load(response)
    except urllib.error.HTTPError as error:
        body = json.load(error)
    return body


def numbers(body: dict[str, Any]) -> list[float]:
    result = body["data"]["result"]
    if body["data"]["resultType"] == "scalar":
        return [float(result[1])]
    return [float(item["value"][1]) for item in result]


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (f"{panel['title']} [{target['refId']}]", target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def substitute(expr: str, namespace: str) -> str:
    values = {"namespace": namespace, "deployment": SERVING, "__rate_interval": RATE_INTERVAL}
    out = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values[m[1] or m[2]], expr)
    assert "$" not in out.replace('"$1"', ""), out
    return out


def llama(
    namespace: str, name: str, annotations: dict[str, str], example_name: str = "llama31-8b-h100.yaml"
) -> dict[str, Any]:
    body = example(example_name, namespace)
    body["metadata"] = {"name": name, "namespace": namespace}
    body["spec"]["podMetadata"] = {"annotations": annotations}
    return body


@pytest.fixture(scope="module")
def namespace(sandbox: Sandbox, llama_crd: str) -> Iterator[str]:
    name = make_namespace(sandbox, "dash")
    yield name
    client.CoreV1Api(sandbox.api).delete_namespace(name)


@pytest.fixture(scope="module")
def operator(sandbox: Sandbox, namespace: str) -> Iterator[OperatorProcess]:
    with OperatorProcess(sandbox, namespace, "dashboards") as process:
        yield process


@pytest.fixture(scope="module")
def vllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vllm]:
    server = Vllm(tmp_path_factory.mktemp("vllm"))
    yield server
    server.stop()


def test_every_dashboard_query_returns_data(
    sandbox: Sandbox, namespace: str, operator: OperatorProcess, vllm: Vllm, file_sd: Path
) -> None:
    custom, core, apps = (
        client.CustomObjectsApi(sandbox.api),
        client.CoreV1Api(sandbox.api),
        client.AppsV1Api(sandbox.api),
    )
    # The serving LlamaDeployment: its KWOK pod runs 15 s, then crashes with a captured CUDA assert, and again;
    # remediation Off keeps the pod (and the name its metrics are labelled with).
    crash = {"llamaops.dev/fake-crash": "embedding_oov", "llamaops.dev/fake-crash-after": "15s"}
    serving = llama(namespace, SERVING, crash)
    serving["spec"]["remediation"] = {"policy": "Off"}
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, serving)
    # Crashes like vllm#16274 while the upstream 0.8.3 image runs; the operator switches to the patched image.
    remedied = llama(
        namespace,
        REMEDIED,
        {
            "llamaops.dev/fake-crash": "block_table_gather",
            "llamaops.dev/fake-crash-after": "2s",
            "llamaops.dev/fake-crash-when": UPSTREAM_083,
        },
        example_name="llama4-scout.yaml",
    )
    remedied["spec"]["engine"].update({"vllmVersion": "0.8.3", "patched": False, "maxModelLen": 12000})
    remedied["spec"]["validation"] = {"knownIssues": "Warn"}
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, remedied)
    # A Deployment of the same name, made by someone else, with its own (immutable) selector: applying the
    # operator's fails with 422 on every attempt.
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": CLASH},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": CLASH}},
                "template": {
                    "metadata": {"labels": {"app": CLASH}},
                    "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]},
                },
            },
        },
    )
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, llama(namespace, CLASH, {}))

    def serving_pod() -> str | None:
        pods = core.list_namespaced_pod(namespace, label_selector=f"llamaops.dev/deployment={SERVING}").items
        return pods[0].metadata.name if pods else None

    pod = wait_for("the serving pod", serving_pod, timeout=90)
    targets = [
        {"targets": [f"127.0.0.1:{vllm.port}"], "labels": {"namespace": namespace, "pod": pod}},
        {"targets": [f"127.0.0.1:{operator.metrics_port}"], "labels": {"component": "llama-operator-test"}},
    ]
    target_file = file_sd / f"dashboards-{namespace}.json"
    target_file.write_text(json.dumps(targets))
    try:
        _traffic(vllm)
        selected = f'{{namespace="{namespace}", pod="{pod}"}}'
        wait_for(
            "vLLM's histograms in Prometheus",
            lambda: numbers(query(sandbox, f"sum(vllm:e2e_request_latency_seconds_count{selected})")),
            timeout=60,
        )
        wait_for(
            "two restarts of the serving pod",
            lambda: [
                v for v in numbers(query(sandbox, f"kube_pod_container_status_restarts_total{selected}")) if v >= 2
            ],
            timeout=150,
        )
        wait_for(
            "a crash signature and a remediation scraped",
            lambda: (
                numbers(query(sandbox, 'llamaops_remediations_total{component="llama-operator-test"}'))
                and numbers(query(sandbox, 'llamaops_crashes_total{component="llama-operator-test"}'))
            ),
            timeout=120,
        )
        wait_for(
            "reconcile errors scraped",
            lambda: numbers(
                query(sandbox, 'llamaops_reconcile_total{component="llama-operator-test", result="error"}')
            ),
            timeout=90,
        )
        _traffic(vllm)  # fresh observations inside the rate window, once scraped
        for histogram in ("time_to_first_token_seconds", "inter_token_latency_seconds", "e2e_request_latency_seconds"):
            rate = f"sum(rate(vllm:{histogram}_count{selected}[{RATE_INTERVAL}])) > 0"
            wait_for(f"recent {histogram} observations scraped", lambda q=rate: numbers(query(sandbox, q)), timeout=30)
        # And a reconcile inside the rate window (a label change is one: kopf's diff covers labels). A refused child
        # is retried only each minute, so nothing else need reconcile while the dashboard is read.
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, SERVING, {"metadata": {"labels": {"touched": str(time.time_ns())}}}
        )
        reconciles = 'llamaops_reconcile_duration_seconds_count{component="llama-operator-test"}'
        recent = f"sum(rate({reconciles}[{RATE_INTERVAL}])) > 0"
        wait_for("a recent reconcile scraped", lambda: numbers(query(sandbox, recent)), timeout=60)
        dashboard = json.loads(DASHBOARD.read_text())
        _variables_list_the_deployment(sandbox, dashboard, namespace)

        failures, checked = [], 0
        for title, expr in panel_queries(dashboard):
            body = query(sandbox, substitute(expr, namespace))
            checked += 1
            if body.get("status") != "success":
                failures.append(f"{title}: {body.get('errorType')}: {body.get('error')}\n  {expr}")
            elif not [v for v in numbers(body) if not math.isnan(v)]:
                failures.append(f"{title}: no series with a number\n  {expr}\n  {body['data']['result']}")
        assert failures == [], "\n".join(failures)
        assert checked == len(panel_queries(dashboard)) >= 20
        print(f"{checked} dashboard queries returned data", file=sys.stderr)
    finally:
        target_file.unlink(missing_ok=True)


def _traffic(vllm: Vllm) -> None:
    for i in range(6):
        answer = vllm.complete(list(range(3, 40 + 10 * i)), max_tokens=8 + i)
        assert answer["choices"][0]["finish_reason"] in ("length", "stop")


def _variables_list_the_deployment(sandbox: Sandbox, dashboard: dict[str, Any], namespace: str) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    for name, expected in (("namespace", namespace), ("deployment", SERVING)):
        variable = variables[name]
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"])
        assert match is not None, variable["query"]
        selector, label = substitute(match[1], namespace), match[2]
        url = f"{sandbox.prometheus_url}/api/v1/label/{label}/values?" + urllib.parse.urlencode({"match[]": selector})
        with urllib.request.urlopen(url, timeout=10) as response:
            values = json.load(response)["data"]
        if regex := variable.get("regex"):
            pattern = re.compile(regex.strip("/"))
            values = [m[1] for v in values if (m := pattern.match(v))]
        assert expected in values, f"${name} offers {values}"
