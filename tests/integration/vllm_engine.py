"""A real vLLM CPU server (the engine venv, images/vllm/scripts/engine-venv.sh) serving the tiny random Llama-4 of
tests/engine on 127.0.0.1, and the sandbox Prometheus's file_sd job that scrapes it as a pod would be scraped.

The LlamaDeployment pods of the sandbox are KWOK fakes with no process behind them, so a local server plays a pod's
container: Prometheus scrapes it labelled with the namespace and pod name that pod's scrape would give.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from llamaops_sandbox import config
from tests.engine_venv import engine_python
from tests.integration.conftest import Sandbox, wait_for

ROOT = Path(__file__).resolve().parents[2]
VLLM_START_TIMEOUT_S = 420.0
PROMPT = list(range(1, 17))  # token ids: the server runs with --skip-tokenizer-init

# Runs in the engine venv: the tiny model and tests/engine's server, stopped when the test closes stdin. Arguments:
# the work folder, --max-model-len (0: the tiny model's own) and --max-num-seqs.
VLLM_DRIVER = """
import sys
from pathlib import Path
from tests.engine.server import Server
from tests.engine.tiny_llama4 import MAX_MODEL_LEN, write_tiny_llama4
work, limit, seqs = Path(sys.argv[1]), int(sys.argv[2]) or MAX_MODEL_LEN, int(sys.argv[3])
server = Server(
    write_tiny_llama4(work / "model"), work / "vllm.log", plugin=False, max_model_len=limit, max_num_seqs=seqs
)
print(server.port, flush=True)
sys.stdin.read()
server.stop()
"""


class Vllm:
    def __init__(self, work: Path, max_model_len: int | None = None, max_num_seqs: int = 8) -> None:
        self.work = work
        self.proc = subprocess.Popen(
            [str(engine_python()), "-c", VLLM_DRIVER, str(work), str(max_model_len or 0), str(max_num_seqs)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        port: list[int] = []
        stdout = self.proc.stdout
        assert stdout is not None
        reader = threading.Thread(target=lambda: port.append(int(stdout.readline() or 0)), daemon=True)
        reader.start()
        reader.join(VLLM_START_TIMEOUT_S)
        if not port or not port[0]:
            self.stop()
            log = (work / "vllm.log").read_text(errors="replace")[-4000:] if (work / "vllm.log").exists() else ""
            raise RuntimeError(f"vLLM did not start:\n{log}")
        self.port = port[0]
        self.url = f"http://127.0.0.1:{self.port}"

    def complete(self, prompt: list[int], max_tokens: int) -> dict[str, Any]:
        body = {"model": "tiny", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
        request = urllib.request.Request(
            self.url + "/v1/completions", json.dumps(body).encode(), {"content-type": "application/json"}
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=120) as response:
            answer: dict[str, Any] = json.load(response)
        return answer

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def prometheus_config_jobs(sandbox: Sandbox) -> set[str]:
    with urllib.request.urlopen(f"{sandbox.prometheus_url}/api/v1/status/config", timeout=10) as response:
        loaded = yaml.safe_load(json.load(response)["data"]["yaml"])
    return {job["job_name"] for job in loaded.get("scrape_configs", [])}


@pytest.fixture(scope="module")
def file_sd(sandbox: Sandbox) -> Path:
    """The file_sd folder the sandbox Prometheus reads. A sandbox started before the file_sd job existed gets its
    config rewritten (same generator, same ports) and reloaded (SIGHUP), rather than restarted."""
    directory = config.file_sd_dir(sandbox.layout)
    directory.mkdir(parents=True, exist_ok=True)
    if config.FILE_SD_JOB not in prometheus_config_jobs(sandbox):
        path = sandbox.layout.run / "prometheus.yml"
        path.write_text(yaml.safe_dump(config.prometheus_config(sandbox.layout, sandbox.state.ports), sort_keys=False))
        os.kill(sandbox.state.pids["prometheus"], signal.SIGHUP)
        wait_for("Prometheus to load the file_sd job", lambda: config.FILE_SD_JOB in prometheus_config_jobs(sandbox))
    return directory


def scrape_as(file_sd: Path, name: str, targets: list[tuple[Vllm, str, str]]) -> Path:
    """Prometheus scrapes each engine as the pod (namespace, pod) it stands in for; ``name`` names the target file."""
    listed = [
        {"targets": [f"127.0.0.1:{engine.port}"], "labels": {"namespace": namespace, "pod": pod}}
        for engine, namespace, pod in targets
    ]
    path = file_sd / f"{name}.json"
    path.write_text(json.dumps(listed))
    return path


class Load:
    """``clients`` threads each sending completions back to back until stopped (real load on a real engine)."""

    def __init__(self, engine: Vllm, clients: int, max_tokens: int = 48) -> None:
        self.engine = engine
        self.max_tokens = max_tokens
        self.stopping = threading.Event()
        self.answered = 0
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]
        for thread in self.threads:
            thread.start()

    def _client(self) -> None:
        while not self.stopping.is_set():
            try:
                self.engine.complete(PROMPT, self.max_tokens)
                self.answered += 1
            except Exception as error:
                self.errors.append(repr(error))
                time.sleep(0.5)

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=150)


def answer(sandbox: Sandbox, query: str) -> float | None:
    """The one value a single-series PromQL query answers, or None when it answers nothing."""
    result = sandbox.prometheus_query(query)
    return float(result[0]["value"][1]) if result else None
