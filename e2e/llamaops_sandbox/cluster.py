"""`sandbox up|down|status|env`: bring the components up in order, record them, and take them down again."""

from __future__ import annotations

import dataclasses
import functools
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

from llamaops_sandbox import config, crashloop, keda, lws, pki, processes, realnode, shapes
from llamaops_sandbox import realnode_config as rc
from llamaops_sandbox.layout import Layout, default_cache
from llamaops_sandbox.processes import SandboxError

START_TIMEOUT_S = 120.0
NODES_READY_TIMEOUT_S = 120.0
KUBECTL_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class State:
    ports: config.Ports
    pids: dict[str, int]
    executables: dict[str, str]
    nodes: int
    real_node: bool = False

    def to_json(self) -> str:
        ports = self.ports.as_dict()
        return json.dumps(
            {
                "ports": {name: port for name, port in ports.items() if name not in config.KEDA_PORTS},
                "keda_ports": {name: ports[name] for name in config.KEDA_PORTS},
                "pids": self.pids,
                "executables": self.executables,
                "nodes": self.nodes,
                "real_node": self.real_node,
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> State:
        data = json.loads(text)
        ports = config.Ports(**data["ports"], **data.get("keda_ports", {}))
        return cls(ports, data["pids"], data["executables"], data["nodes"], bool(data.get("real_node", False)))


def all_components(layout: Layout, ports: config.Ports, real_node: bool) -> list[config.Component]:
    """The control plane and its helpers, then the real node's processes when it has one."""
    extra = realnode.components(layout, ports.as_dict()) if real_node else []
    return [*config.components(layout, ports), *extra]


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
    # The forwarder is probed at the bridge's gateway address; the API server's certificate names it, but the
    # probe is only about the path through the forwarder.
    return {
        "kube-apiserver": apiserver,
        "kube-controller-manager": self_signed,
        "kube-scheduler": self_signed,
        "apiserver-forwarder": self_signed,
        # Its certificate names 127.0.0.1 and comes from the sandbox CA.
        keda.ADAPTER: apiserver,
    }


def health(layout: Layout, state: State) -> dict[str, str]:
    """Each component's condition: healthy, unhealthy (running, probe fails) or stopped."""
    contexts = _tls_contexts(layout)
    result = {}
    for component in all_components(layout, state.ports, state.real_node):
        pid, exe = state.pids.get(component.name), state.executables.get(component.name, "")
        if pid is None or not processes.alive(pid, exe):
            result[component.name] = "stopped"
        elif processes.probe(component.health_url, contexts.get(component.name)):
            result[component.name] = "healthy"
        else:
            result[component.name] = "unhealthy"
    return result


def run_kubectl(
    layout: Layout, *args: str, stdin: str | None = None, timeout: float = KUBECTL_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """The sandbox's kubectl, its outcome returned (tests of refusals read it)."""
    return subprocess.run(  # noqa: S603 - our kubectl binary, arguments from this module
        [str(layout.bin / "kubectl"), f"--kubeconfig={layout.kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def kubectl(layout: Layout, *args: str, stdin: str | None = None) -> str:
    proc = run_kubectl(layout, *args, stdin=stdin)
    if proc.returncode != 0:
        raise SandboxError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def ensure_binaries(layout: Layout, log: Callable[[str], None]) -> None:
    """Run scripts/sandbox-build.sh (cheap when everything is cached) if any binary is missing."""
    wanted = [Path(c.argv[0]) for c in config.components(layout, config.Ports(*range(config.Ports.count())))]
    wanted.append(layout.bin / "kubectl")
    missing = [p.name for p in wanted if not p.exists()]
    # Read from the Go module cache the build fills: KWOK's stages, LWS's CRDs and webhook manifests.
    sources = [*layout.kwok_upstream_stages(), *lws.crd_files(layout), lws.webhook_manifests(layout)]
    # KEDA's CRDs and RBAC; a glob finds no CRD before the module is there.
    sources += [*keda.rbac_files(layout), keda.module_dir(layout) / "config" / "crd" / "bases"]
    if missing or not all(s.exists() for s in sources):
        log(f"building sandbox binaries (missing: {', '.join(missing) or 'module files'})")
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
    # A copy, as the crash stage: the run must not depend on the checkout that started it staying as it was.
    (layout.run / "kwok-image-pull.yaml").write_text(layout.image_pull_stage.read_text())
    _write_lws_files(layout, ports)
    _write_keda_files(layout, ports)


def _write_lws_files(layout: Layout, ports: config.Ports) -> None:
    pki.ensure_serving_cert(layout.pki, lws.cert_dir(layout))
    cfg = lws.controller_config(layout, ports.lws_webhook, ports.lws_health)
    lws.config_file(layout).write_text(yaml.safe_dump(cfg, sort_keys=False))


def install_lws(layout: Layout, ports: config.Ports) -> None:
    """LWS's CRDs (Established) and its webhook configurations, pointed at the controller on 127.0.0.1."""
    crds = lws.crd_files(layout)
    # Server-side: the LeaderWorkerSet CRD is larger than the last-applied annotation a client-side apply writes.
    kubectl(layout, "apply", "--server-side", "--force-conflicts", *(f"--filename={c}" for c in crds))
    kubectl(layout, "wait", "--for=condition=Established", "--timeout=60s", *(f"--filename={c}" for c in crds))
    hooks = lws.webhook_configurations(
        lws.webhook_manifests(layout).read_text(),
        f"https://127.0.0.1:{ports.lws_webhook}",
        (layout.pki / "ca.crt").read_bytes(),
    )
    manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": hooks})
    kubectl(layout, "apply", "--server-side", "--force-conflicts", "-f", "-", stdin=manifest)


def _write_keda_files(layout: Layout, ports: config.Ports) -> None:
    """KEDA's certificate directory (the sandbox CA, a certificate for the adapter's Service name and 127.0.0.1,
    also its gRPC client certificate) and its kubeconfig, as its ServiceAccount's user."""
    certs = keda.cert_dir(layout)
    pki.ensure_serving_cert(layout.pki, certs, ("127.0.0.1",), ("localhost", keda.SERVICE_DNS), client=True)
    shutil.copyfile(layout.pki / "ca.crt", certs / "ca.crt")
    pki.ensure_client_cert(layout.pki, "keda", keda.USER, keda.GROUPS)
    server = f"https://127.0.0.1:{ports.apiserver}"
    cfg = config.kubeconfig(server, layout.pki / "ca.crt", layout.pki / "keda.crt", layout.pki / "keda.key", "keda")
    keda.kubeconfig_file(layout).write_text(yaml.safe_dump(cfg, sort_keys=False))
    keda.kubeconfig_file(layout).chmod(0o600)


def install_keda(layout: Layout, ports: config.Ports) -> None:
    """What KEDA needs before it starts: its CRDs (Established), its namespace, the ExternalName Service the
    APIService will name, and its RBAC (upstream's manifests from the module)."""
    crds = keda.crd_files(layout)
    if not crds:
        raise SandboxError(f"no KEDA CRDs under {keda.module_dir(layout)}: run scripts/sandbox-build.sh keda")
    # Server-side: the ScaledJob CRD is larger than the last-applied annotation a client-side apply writes.
    kubectl(layout, "apply", "--server-side", "--force-conflicts", *(f"--filename={c}" for c in crds))
    kubectl(layout, "wait", "--for=condition=Established", "--timeout=60s", *(f"--filename={c}" for c in crds))
    namespace, service, _ = keda.cluster_objects(b"", ports.keda_adapter)
    manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": [namespace, service]})
    kubectl(layout, "apply", "--server-side", "--force-conflicts", "-f", "-", stdin=manifest)
    rbac = (f"--filename={f}" for f in keda.rbac_files(layout))
    kubectl(layout, "apply", "--server-side", "--force-conflicts", *rbac)


def register_keda_api(layout: Layout, ports: config.Ports) -> None:
    """The APIService, once the adapter serves: while it is registered and unreachable, discovery of the whole
    cluster reports it failed and the namespace controller does not finish deleting any namespace."""
    *_, apiservice = keda.cluster_objects((layout.pki / "ca.crt").read_bytes(), ports.keda_adapter)
    kubectl(layout, "apply", "--server-side", "--force-conflicts", "-f", "-", stdin=json.dumps(apiservice))
    kubectl(layout, "wait", "--for=condition=Available", "--timeout=60s", f"apiservice/{keda.APISERVICE}")


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


def up(layout: Layout, shape_path: Path, log: Callable[[str], None], *, real_node: bool = False) -> tuple[State, bool]:
    """Start the sandbox, or reuse the running one. Returns the state and whether it was already running.
    ``real_node``: also a real kubelet node with containerd and a local registry (realnode_config)."""
    state = read_state(layout)
    if state is not None:
        if real_node and not state.real_node:
            state = State(state.ports, state.pids, state.executables, state.nodes, True)
        conditions = health(layout, state)
        started = {name: c for name, c in conditions.items() if name in state.pids}
        if started and set(started.values()) == {"healthy"}:
            added = [name for name in conditions if name not in state.pids]
            return (_add_components(layout, state, added, log) if added else state), True
        log("a previous sandbox is partly running; taking it down first")
        down(layout)
    shape = load_shape(shape_path)
    ensure_binaries(layout, log)
    # A fresh cluster every time: the data of a previous run is dropped, its logs are kept.
    for stale in (layout.etcd_data, layout.prometheus_data):
        shutil.rmtree(stale, ignore_errors=True)
    layout.logs.mkdir(parents=True, exist_ok=True)
    pki.ensure_pki(layout.pki)
    pki.ensure_front_proxy(layout.pki)
    contexts = _tls_contexts(layout)
    pids: dict[str, int] = {}
    executables: dict[str, str] = {}
    if real_node:
        _check_host_tools()
    ports = config.Ports(*processes.free_ports(config.Ports.count()))
    if not real_node:
        # The real node's ports stay 0 without it (`sandbox env` then names no registry).
        ports = dataclasses.replace(ports, **dict.fromkeys(config.REAL_NODE_PORTS, 0))
    _write_files(layout, ports)
    state = State(ports, pids, executables, 0, real_node)
    components = config.components(layout, ports)
    try:
        # etcd and the apiserver in turn; everything else only needs the apiserver, so it starts together.
        waves = [components[:1], components[1:2], components[2:]]
        for index, wave in enumerate(waves):
            if index == 2:
                # The LWS controller needs its CRDs to start and its webhooks registered to be of use; KEDA its
                # CRDs and RBAC.
                install_lws(layout, ports)
                install_keda(layout, ports)
            _start_wave(layout, state, wave, contexts, log)
        register_keda_api(layout, ports)
        count = _create_nodes(layout, shape)
        state = State(ports, pids, executables, count, real_node)
        _write_state(layout, state)
        _wait_nodes_ready(layout, count)
        log(f"{count} fake GPU nodes Ready")
        if real_node:
            _start_real_node(layout, state, log)
    except BaseException:
        down(layout)
        raise
    return state, False


def _start_wave(
    layout: Layout,
    state: State,
    wave: list[config.Component],
    contexts: dict[str, ssl.SSLContext | None],
    log: Callable[[str], None],
) -> None:
    """Start components together, recording each pid as it starts, then wait until each is healthy."""
    started = time.monotonic()
    for c in wave:
        state.pids[c.name] = processes.start(c.argv, layout.log(c.name), c.env)
        state.executables[c.name] = c.argv[0]
        _write_state(layout, state)
        log(f"started {c.name} (pid {state.pids[c.name]}, log {layout.log(c.name)})")
    for c in wave:
        processes.wait_healthy(
            c.name,
            state.pids[c.name],
            c.argv[0],
            c.health_url,
            contexts.get(c.name),
            layout.log(c.name),
            START_TIMEOUT_S,
        )
        log(f"{c.name} healthy after {time.monotonic() - started:.1f}s")


def _add_components(layout: Layout, state: State, names: list[str], log: Callable[[str], None]) -> State:
    """Start components a running sandbox does not have yet (it was started by an older version), without
    restarting it: other users' objects and tests keep running. Their ports are picked free now."""
    ensure_binaries(layout, log)
    taken = state.ports.as_dict()
    unset = [name for name, port in taken.items() if port == 0]
    fresh = iter(processes.free_ports(len(unset)))
    ports = config.Ports(**{name: port or next(fresh) for name, port in taken.items()})
    state = State(ports, state.pids, state.executables, state.nodes, state.real_node)
    _write_state(layout, state)
    if "lws-controller" in names:
        _write_lws_files(layout, ports)
        install_lws(layout, ports)
    adds_keda = keda.OPERATOR in names or keda.ADAPTER in names
    apiserver = processes.command_line(state.pids["kube-apiserver"]) or []
    aggregates = any(arg.startswith("--proxy-client-cert-file=") for arg in apiserver)
    if adds_keda:
        _write_keda_files(layout, ports)
        install_keda(layout, ports)
        if not aggregates:
            # The APIService stays unregistered: the aggregator could not authenticate to the adapter.
            log(
                "warning: this kube-apiserver was started before the sandbox had KEDA, without the aggregation "
                "layer: the HPA controller cannot read KEDA's external metrics until `llamaops-sandbox down` and `up`"
            )
    control_plane = [n for n in names if n not in rc.COMPONENTS]
    wave = [c for c in config.components(layout, ports) if c.name in control_plane]
    if wave:
        log(f"adding {', '.join(control_plane)} to the running sandbox")
        _start_wave(layout, state, wave, _tls_contexts(layout), log)
    if adds_keda and aggregates:
        register_keda_api(layout, ports)
    if any(n in rc.COMPONENTS for n in names):
        _start_real_node(layout, state, log)
    return state


def _check_host_tools() -> None:
    if missing := realnode.missing_host_tools():
        needed = ", ".join(missing)
        raise SandboxError(f"the real node needs {needed}: run (as root) scripts/sandbox-build.sh host-packages")


def _stop_real_node(layout: Layout, state: State) -> list[str]:
    """Stop the real node's recorded processes (reverse start order; its containers, which outlive the kubelet
    and containerd, while containerd still answers), then clear what a killed run may have left. Returns the names
    stopped; they are dropped from ``state``."""
    stopped = []
    for name in reversed(rc.COMPONENTS):
        pid, executable = state.pids.pop(name, None), state.executables.pop(name, "")
        if pid is None:
            continue
        if name == "containerd":
            realnode.stop_containers(layout)
        if processes.alive(pid, executable):
            processes.stop(pid, executable)
            stopped.append(name)
    realnode.cleanup(layout)
    return stopped


def _start_real_node(layout: Layout, state: State, log: Callable[[str], None]) -> None:
    """Host set-up, then registry, containerd, the API server forwarder, the kubelet and kube-proxy in turn (each
    needs the one before), then the node's GPUs and the `kubernetes` Service's endpoints."""
    _check_host_tools()
    ports = state.ports.as_dict()
    # A node partly up (a failed start): start it afresh. Its files are rewritten below, and kube-proxy exits when
    # its configuration file changes under it.
    _stop_real_node(layout, state)
    _write_state(layout, state)
    realnode.prepare_host()
    realnode.write_files(layout, ports)
    contexts = _tls_contexts(layout)
    for component in realnode.components(layout, ports):
        _start_wave(layout, state, [component], contexts, log)
    realnode.join(layout, functools.partial(kubectl, layout), ports["apiserver"], log)


def stop_demo_operator(layout: Layout) -> bool:
    """Stop the operator scripts/demo.sh started, if it still runs. Returns whether one was stopped."""
    try:
        pid = int(layout.demo_operator_pid.read_text().strip())
    except (OSError, ValueError):
        return False
    layout.demo_operator_pid.unlink(missing_ok=True)
    executable = (processes.command_line(pid) or [""])[0]
    if (
        not executable
        or not processes.alive(pid, executable)
        or "llama-operator" not in " ".join(processes.command_line(pid) or [])
    ):
        return False
    processes.stop(pid, executable)
    return True


def down(layout: Layout) -> list[str]:
    """Stop every recorded component (reverse start order) and forget the state. Returns the names stopped."""
    state = read_state(layout)
    stopped = ["demo operator"] if stop_demo_operator(layout) else []
    if state is not None:
        if any(name in state.pids for name in rc.COMPONENTS):
            stopped += _stop_real_node(layout, state)
        for name in reversed(config.COMPONENTS):
            pid = state.pids.get(name)
            if pid is not None and processes.alive(pid, state.executables.get(name, "")):
                processes.stop(pid, state.executables[name])
                stopped.append(name)
    layout.state_file.unlink(missing_ok=True)
    return stopped


def restart(layout: Layout, name: str, log: Callable[[str], None], *, down_s: float = 0.0) -> State:
    """Stop one component of the running sandbox and start it again on the same ports and data (fault tests:
    an apiserver restart under a working operator). ``down_s``: how long it stays down in between."""
    state = read_state(layout)
    if state is None or name not in state.pids:
        raise processes.SandboxError(f"no running sandbox component {name!r}")
    (component,) = [c for c in all_components(layout, state.ports, state.real_node) if c.name == name]
    processes.stop(state.pids[name], state.executables[name])
    log(f"stopped {name}")
    time.sleep(down_s)
    _start_wave(layout, state, [component], _tls_contexts(layout), log)
    return state


def private_layout(root: Path, main: Layout | None = None) -> Layout:
    """A sandbox of one's own under ``root``: its own run state, certificates and ports, sharing the main cache's
    binaries and Go modules (KWOK stages, LWS manifests) by symlink. For fault tests that restart a control plane
    and for benchmarks, beside a running shared sandbox."""
    main = main or Layout(default_cache())
    for link, target in ((root / "sandbox" / "bin", main.bin), (root / "go" / "mod", main.gomodcache)):
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)
    return Layout(root)
