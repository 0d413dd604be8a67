"""`sandbox up|down|status|env`: bring the components up in order, record them, and take them down again."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from llama_operator.sandbox import config, crashloop, pki, processes, shapes
from llama_operator.sandbox.layout import Layout
from llama_operator.sandbox.processes import SandboxError

START_TIMEOUT_S = 120.0
NODES_READY_TIMEOUT_S = 120.0
KUBECTL_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class State:
    ports: config.Ports
    pids: dict[str, int]
    executables: dict[str, str]
    nodes: int

    def to_json(self) -> str:
        return json.dumps(
            {"ports": self.ports.as_dict(), "pids": self.pids, "executables": self.executables, "nodes": self.nodes},
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> State:
        data = json.loads(text)
        return cls(config.Ports(**data["ports"]), data["pids"], data["executables"], data["nodes"])


def read_state(layout: Layout) -> State | None:
    try:
        return State.from_json(layout.state_file.read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_state(layout: Layout, state: State) -> None:
    tmp = layout.state_file.with_suffix(".tmp")
    tmp.write_text(state.to_json())
    tmp.replace(layout.state_file)


def _tls_contexts(layout: Layout) -> dict[str, ssl.SSLContext | None]:
    apiserver = ssl.create_default_context(cafile=str(layout.pki / "ca.crt"))
    apiserver.load_cert_chain(layout.pki / "admin.crt", layout.pki / "admin.key")
    # The controller-manager and scheduler serve self-signed in-memory certificates; their /healthz is probed on
    # loopback only, so it is not verified.
    self_signed = ssl.create_default_context()
    self_signed.check_hostname = False
    self_signed.verify_mode = ssl.CERT_NONE
    return {"kube-apiserver": apiserver, "kube-controller-manager": self_signed, "kube-scheduler": self_signed}


def health(layout: Layout, state: State) -> dict[str, str]:
    """Each component's condition: healthy, unhealthy (running, probe fails) or stopped."""
    contexts = _tls_contexts(layout)
    result = {}
    for component in config.components(layout, state.ports):
        pid, exe = state.pids.get(component.name), state.executables.get(component.name, "")
        if pid is None or not processes.alive(pid, exe):
            result[component.name] = "stopped"
        elif processes.probe(component.health_url, contexts.get(component.name)):
            result[component.name] = "healthy"
        else:
            result[component.name] = "unhealthy"
    return result


def kubectl(layout: Layout, *args: str, stdin: str | None = None) -> str:
    proc = subprocess.run(  # noqa: S603 - our kubectl binary, arguments from this module
        [str(layout.bin / "kubectl"), f"--kubeconfig={layout.kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=KUBECTL_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        raise SandboxError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def ensure_binaries(layout: Layout, log: Callable[[str], None]) -> None:
    """Run scripts/sandbox-build.sh (cheap when everything is cached) if any binary is missing."""
    wanted = [Path(c.argv[0]) for c in config.components(layout, config.Ports(*range(config.Ports.count())))]
    wanted.append(layout.bin / "kubectl")
    missing = [p.name for p in wanted if not p.exists()]
    stages = layout.kwok_upstream_stages(config.KWOK_VERSION)
    if missing or not all(s.exists() for s in stages):
        log(f"building sandbox binaries (missing: {', '.join(missing) or 'KWOK stages'})")
        subprocess.run([shutil.which("bash") or "/bin/bash", str(layout.build_script)], check=True)  # noqa: S603


def _write_files(layout: Layout, ports: config.Ports) -> None:
    server = f"https://127.0.0.1:{ports.apiserver}"
    ca = layout.pki / "ca.crt"
    for stem, path in (
        ("admin", layout.kubeconfig),
        ("controller-manager", layout.run / "controller-manager.kubeconfig"),
        ("scheduler", layout.run / "scheduler.kubeconfig"),
    ):
        cfg = config.kubeconfig(server, ca, layout.pki / f"{stem}.crt", layout.pki / f"{stem}.key", stem)
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        path.chmod(0o600)
    (layout.run / "prometheus.yml").write_text(yaml.safe_dump(config.prometheus_config(layout, ports), sort_keys=False))
    captures: dict[str, crashloop.Capture] = {}
    for capture_file in sorted(layout.cuda_fixtures.glob("*.txt")):
        captures.update(crashloop.parse_captures(capture_file.read_text()))
    stage = crashloop.render_crash_stage(layout.crash_stage.read_text(), captures)
    (layout.run / "kwok-crash-loop.yaml").write_text(stage)


def load_shape(path: Path) -> shapes.Shape:
    return shapes.parse_shape(yaml.safe_load(path.read_text()))


def _create_nodes(layout: Layout, shape: shapes.Shape) -> int:
    items = shapes.nodes(shape)
    if items:
        kubectl(
            layout,
            "create",
            "-f",
            "-",
            "-o",
            "name",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
        )
    return len(items)


def _ready_nodes(layout: Layout) -> int:
    out = json.loads(kubectl(layout, "get", "nodes", "-o", "json"))
    ready = 0
    for node in out["items"]:
        conditions: list[dict[str, Any]] = node.get("status", {}).get("conditions", [])
        ready += any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return ready


def _wait_nodes_ready(layout: Layout, expected: int) -> None:
    deadline = time.monotonic() + NODES_READY_TIMEOUT_S
    while (ready := _ready_nodes(layout)) < expected:
        if time.monotonic() > deadline:
            raise SandboxError(
                f"only {ready}/{expected} nodes became Ready; last lines of {layout.log('kwok')}:\n"
                + processes.tail(layout.log("kwok"))
            )
        time.sleep(0.5)


def up(layout: Layout, shape_path: Path, log: Callable[[str], None]) -> tuple[State, bool]:
    """Start the sandbox, or reuse the running one. Returns the state and whether it was already running."""
    state = read_state(layout)
    if state is not None:
        if set(health(layout, state).values()) == {"healthy"}:
            return state, True
        log("a previous sandbox is partly running; taking it down first")
        down(layout)
    shape = load_shape(shape_path)
    ensure_binaries(layout, log)
    # A fresh cluster every time: the data of a previous run is dropped, its logs are kept.
    for stale in (layout.etcd_data, layout.prometheus_data):
        shutil.rmtree(stale, ignore_errors=True)
    layout.logs.mkdir(parents=True, exist_ok=True)
    pki.ensure_pki(layout.pki)
    ports = config.Ports(*processes.free_ports(config.Ports.count()))
    _write_files(layout, ports)
    contexts = _tls_contexts(layout)
    pids: dict[str, int] = {}
    executables: dict[str, str] = {}
    state = State(ports, pids, executables, 0)
    components = config.components(layout, ports)
    try:
        # etcd and the apiserver in turn; everything else only needs the apiserver, so it starts together.
        waves = [components[:1], components[1:2], components[2:]]
        for wave in waves:
            started = time.monotonic()
            for c in wave:
                pids[c.name] = processes.start(c.argv, layout.log(c.name))
                executables[c.name] = c.argv[0]
                _write_state(layout, state)
                log(f"started {c.name} (pid {pids[c.name]}, log {layout.log(c.name)})")
            for c in wave:
                processes.wait_healthy(
                    c.name,
                    pids[c.name],
                    c.argv[0],
                    c.health_url,
                    contexts.get(c.name),
                    layout.log(c.name),
                    START_TIMEOUT_S,
                )
                log(f"{c.name} healthy after {time.monotonic() - started:.1f}s")
        count = _create_nodes(layout, shape)
        state = State(ports, pids, executables, count)
        _write_state(layout, state)
        _wait_nodes_ready(layout, count)
        log(f"{count} fake GPU nodes Ready")
    except BaseException:
        down(layout)
        raise
    return state, False


def stop_demo_operator(layout: Layout) -> bool:
    """Stop the operator scripts/demo.sh started, if it still runs. Returns whether one was stopped."""
    try:
        pid = int(layout.demo_operator_pid.read_text().strip())
    except (OSError, ValueError):
        return False
    layout.demo_operator_pid.unlink(missing_ok=True)
    executable = (processes.command_line(pid) or [""])[0]
    if not executable or not processes.alive(pid, executable) or "llama-operator" not in " ".join(
        processes.command_line(pid) or []
    ):
        return False
    processes.stop(pid, executable)
    return True


def down(layout: Layout) -> list[str]:
    """Stop every recorded component (reverse start order) and forget the state. Returns the names stopped."""
    state = read_state(layout)
    stopped = ["demo operator"] if stop_demo_operator(layout) else []
    if state is not None:
        for name in reversed(config.COMPONENTS):
            pid = state.pids.get(name)
            if pid is not None and processes.alive(pid, state.executables.get(name, "")):
                processes.stop(pid, state.executables[name])
                stopped.append(name)
    layout.state_file.unlink(missing_ok=True)
    return stopped
