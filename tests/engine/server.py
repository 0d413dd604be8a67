"""Start and stop a real vLLM OpenAI server (CPU build) on a free loopback port, and talk to it."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.engine.tiny_llama4 import DTYPE, MAX_MODEL_LEN

STARTUP_TIMEOUT_S = 300
# Loopback only: never through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(
        self,
        model: Path,
        log: Path,
        plugin: bool,
        env: dict[str, str] | None = None,
        max_num_seqs: int = 8,
        max_model_len: int = MAX_MODEL_LEN,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        environ = dict(os.environ)
        environ.update(
            {
                # VLLM_PLUGINS selects general plugins by entry-point name; "" loads none.
                "VLLM_PLUGINS": "llamaops" if plugin else "",
                "VLLM_CPU_KVCACHE_SPACE": "1",
                "OMP_NUM_THREADS": "1",
                # Nothing leaves the machine: no hub look-ups, no usage reports.
                "HF_HUB_OFFLINE": "1",
                "VLLM_NO_USAGE_STATS": "1",
                "DO_NOT_TRACK": "1",
            }
        )
        environ.update(env or {})
        args = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(model), "--served-model-name", "tiny",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--skip-tokenizer-init", "--max-model-len", str(max_model_len), "--dtype", DTYPE,
            "--max-num-seqs", str(max_num_seqs), "--enforce-eager",
        ]  # fmt: skip
        self._log_file = log.open("w")
        self.proc = subprocess.Popen(args, env=environ, stdout=self._log_file, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vLLM exited with {self.proc.returncode} while starting:\n{self.log_tail()}")
            if self.health() == 200:
                return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"vLLM not ready after {STARTUP_TIMEOUT_S}s:\n{self.log_tail()}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_text()[-chars:]

    def health(self) -> int | None:
        try:
            with _OPENER.open(self.url + "/health", timeout=5) as r:
                return int(r.status)
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return None

    def get(self, path: str) -> str:
        with _OPENER.open(self.url + path, timeout=30) as r:
            return str(r.read().decode())

    def complete(self, prompt: list[int], max_tokens: int = 4, **extra: Any) -> tuple[int, dict[str, Any]]:
        body = {"model": "tiny", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, **extra}
        req = urllib.request.Request(
            self.url + "/v1/completions", data=json.dumps(body).encode(), headers={"content-type": "application/json"}
        )
        try:
            with _OPENER.open(req, timeout=120) as r:
                return int(r.status), json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def wait_exit(self, timeout_s: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()
