"""The canary's metric analysis in the sandbox (issue #22), on real vLLM engines and the sandbox's real Prometheus.

A 2-replica LlamaDeployment (step 1) is moved to a new vLLM version; its KWOK pods, one stable and one canary, have
no process behind them, so two real vLLM CPU servers (the tiny Llama-4 of tests/engine, on 127.0.0.1) play their
containers: Prometheus scrapes each through the sandbox's file_sd job labelled with the namespace and pod name a
pod scrape gives, as tests/integration/test_chart_dashboards.py does. The stable engine serves the model's full
context (512 tokens); the canary engine runs with --max-model-len 128, the kind of change a new configuration
brings, so it really rejects (HTTP 400) the longer prompts the stable engine serves. The test plays the Service:
the same real completions go to both engines while the canary holds.

- Prompts up to 300 tokens: the canary's error rate regresses and the operator halts the rollout with reason
  MetricRegression, naming the metric and both figures, back on the previous version.
- Prompts the canary can serve: the analysis passes (its figures in the RolloutPromoted Event) and the rollout
  completes.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Sandbox, wait_for
from tests.integration.llamas import Llamas, example, watched_namespace
from tests.integration.operator_process import OperatorProcess
from tests.integration.vllm_engine import Vllm, file_sd

pytestmark = pytest.mark.integration

NAME = "llama31-8b"
OLD, NEW = "0.31.0", "0.32.0"
CANARY_MAX_MODEL_LEN = 128
MAX_TOKENS = 8
# Prompt lengths cycled through; with MAX_TOKENS, the canary engine refuses those above 120 tokens.
LONG_PROMPTS = (20, 60, 100, 200, 300)
SHORT_PROMPTS = (20, 40, 60, 80, 100)
MIN_REQUESTS = 20
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

__all__ = ["file_sd"]  # the fixture, shared with the dashboards test


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Vllm, Vllm]]:
    """The stable engine and the canary engine, started side by side (each is about a minute on a quiet core)."""
    started: dict[str, Vllm | BaseException] = {}

    def start(role: str, limit: int | None) -> None:
        try:
            started[role] = Vllm(tmp_path_factory.mktemp(f"vllm-{role}"), limit)
        except BaseException as error:
            started[role] = error

    threads = [
        threading.Thread(target=start, args=("stable", None)),
        threading.Thread(target=start, args=("canary", CANARY_MAX_MODEL_LEN)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ready = [s for s in started.values() if isinstance(s, Vllm)]
    try:
        for server in started.values():
            if isinstance(server, BaseException):
                raise server
        stable, canary = started["stable"], started["canary"]
        assert isinstance(stable, Vllm)
        assert isinstance(canary, Vllm)
        yield stable, canary
    finally:
        for server in ready:
            server.stop()


@pytest.fixture(scope="module")
def operator(sandbox: Sandbox, llama_crd: str) -> Iterator[OperatorProcess]:
    env = {"LLAMAOPS_PROMETHEUS_URL": sandbox.prometheus_url, "LLAMAOPS_PROMETHEUS_INTERVAL": "2"}
    with OperatorProcess(sandbox, "ranalysis-*", "rollout-analysis", env=env) as process:
        yield process


@pytest.fixture
def llamas(sandbox: Sandbox, operator: OperatorProcess, request: pytest.FixtureRequest) -> Iterator[Llamas]:
    with watched_namespace(sandbox, "ranalysis", request) as llamas:
        yield llamas


def send(url: str, prompt_tokens: int) -> int:
    """One real completion; its HTTP status."""
    body = {"model": "tiny", "prompt": list(range(3, 3 + prompt_tokens)), "max_tokens": MAX_TOKENS, "temperature": 0}
    request = urllib.request.Request(
        url + "/v1/completions", json.dumps(body).encode(), {"content-type": "application/json"}
    )
    try:
        with _OPENER.open(request, timeout=120) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        error.read()
        return int(error.code)


class Traffic:
    """The same completions to both engines, round after round, until stopped; the statuses each answered."""

    def __init__(self, engines: tuple[Vllm, Vllm], prompts: tuple[int, ...]) -> None:
        self.engines = engines
        self.prompts = prompts
        self.statuses: dict[str, list[int]] = {"stable": [], "canary": []}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        stable, canary = self.engines
        i = 0
        while not self._stop.wait(0.1):  # a modest rate: the machine's two cores are shared
            length = self.prompts[i % len(self.prompts)]
            self.statuses["stable"].append(send(stable.url, length))
            self.statuses["canary"].append(send(canary.url, length))
            i += 1

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=130)


def two_replicas(llamas: Llamas, window: str) -> None:
    body = example("llama31-8b-h100.yaml", llamas.namespace)
    body["spec"]["replicas"] = 2
    body["spec"]["engine"]["vllmVersion"] = OLD
    body["spec"]["rollout"] = {"stabilityWindow": window, "analysis": {"minRequests": MIN_REQUESTS}}
    llamas.create(body)
    llamas.wait_phase(NAME, "Running", timeout=180)
    wait_for("2 ready replicas", lambda: llamas.status(NAME).get("readyReplicas") == 2, timeout=120)


def holding_canary(llamas: Llamas) -> tuple[str, str]:
    """Start the rollout and wait for the canary to hold: (stable pod, canary pod)."""
    llamas.patch_spec(NAME, {"engine": {"vllmVersion": NEW}})
    llamas.wait_status(NAME, "the canary holding", lambda s: (s.get("rollout") or {}).get("reason") == "Holding", 120)
    pods = [p for p in llamas.pods(NAME) if not p.metadata.deletion_timestamp]
    canary = [p.metadata.name for p in pods if (p.metadata.labels or {}).get("llamaops.dev/track") == "canary"]
    stable = [p.metadata.name for p in pods if p.metadata.name not in canary]
    assert (len(stable), len(canary)) == (1, 1), [p.metadata.name for p in pods]
    return stable[0], canary[0]


def scraped_as(file_sd: Path, llamas: Llamas, engines: tuple[Vllm, Vllm], pods: tuple[str, str]) -> Path:
    """Prometheus scrapes the stable engine as the stable pod and the canary engine as the canary pod."""
    targets = [
        {"targets": [f"127.0.0.1:{engine.port}"], "labels": {"namespace": llamas.namespace, "pod": pod}}
        for engine, pod in zip(engines, pods, strict=True)
    ]
    path = file_sd / f"rollout-analysis-{llamas.namespace}.json"
    path.write_text(json.dumps(targets))
    return path


def rollouts_counted(operator: OperatorProcess, result: str, reason: str) -> float:
    wanted = f'llamaops_rollouts_total{{reason="{reason}",result="{result}"}}'
    lines = [line for line in operator.metrics().splitlines() if line.startswith(wanted)]
    return float(lines[0].split()[-1]) if lines else 0.0


def test_a_canary_that_rejects_what_the_stable_replicas_serve_halts_on_metric_regression(
    llamas: Llamas, operator: OperatorProcess, engines: tuple[Vllm, Vllm], file_sd: Path
) -> None:
    two_replicas(llamas, "10m")  # long: only the analysis can end this canary
    pods = holding_canary(llamas)
    target = scraped_as(file_sd, llamas, engines, pods)
    try:
        with Traffic(engines, LONG_PROMPTS) as traffic:
            halted = llamas.wait_status(
                NAME, "rollout Halted", lambda s: (s.get("rollout") or {}).get("phase") == "Halted", 240
            )
    finally:
        target.unlink(missing_ok=True)
    # The engines really answered so: the stable one served everything, the canary refused the long prompts.
    assert set(traffic.statuses["stable"]) == {200}
    assert set(traffic.statuses["canary"]) == {200, 400}
    rollout = halted["rollout"]
    assert (rollout["verdict"], rollout["reason"]) == ("Failed", "MetricRegression")
    message = rollout["message"]
    print(f"\n{message}")
    assert message.startswith("step 1: canary error rate regressed: canary "), message
    assert "(4xx/5xx answers: " in message
    assert "stable 0.00%" in message
    assert "threshold 1.00% (stable + 1 percentage points)" in message
    assert message.endswith("returned to the previous configuration")
    events = [e for e in llamas.events(NAME) if e.reason == "RolloutHalted"]
    assert events
    assert events[0].type == "Warning"
    assert "error rate regressed" in events[0].message
    assert rollouts_counted(operator, "Halted", "MetricRegression") >= 1
    # Back on the previous version, both replicas.
    wait_for(
        "2 ready replicas of the previous version",
        lambda: (
            sorted(p.spec.containers[0].image for p in llamas.pods(NAME) if not p.metadata.deletion_timestamp)
            == [f"ghcr.io/llamaops/vllm:{OLD}-llamaops"] * 2
            and llamas.status(NAME).get("readyReplicas") == 2
        ),
        timeout=120,
    )


def test_a_healthy_canary_passes_the_analysis_and_completes(
    llamas: Llamas, operator: OperatorProcess, engines: tuple[Vllm, Vllm], file_sd: Path
) -> None:
    two_replicas(llamas, "60s")
    pods = holding_canary(llamas)
    target = scraped_as(file_sd, llamas, engines, pods)
    try:
        with Traffic(engines, SHORT_PROMPTS) as traffic:
            done = llamas.wait_status(
                NAME,
                "rollout finished",
                lambda s: (s.get("rollout") or {}).get("phase") in ("Completed", "Halted"),
                240,
            )
    finally:
        target.unlink(missing_ok=True)
    assert set(traffic.statuses["stable"]) == set(traffic.statuses["canary"]) == {200}
    assert done["rollout"]["phase"] == "Completed", done["rollout"]
    promoted = [e for e in llamas.events(NAME) if e.reason == "RolloutPromoted"]
    assert promoted
    message: Any = promoted[0].message
    # The analysis judged (not inconclusive): the figures of both tracks within the thresholds.
    assert "metrics within thresholds over " in message, message
    assert "error rate 0.00% vs 0.00%" in message
    assert "p90 time to first token" in message
    print(f"\n{message}")
