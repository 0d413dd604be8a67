"""The sandbox's real node (I/O): host preparation, its processes, joining the cluster, and cleaning up after it.

Needs root (network namespaces, cgroups, iptables) and the Debian packages that
`scripts/sandbox-build.sh host-packages` installs.
What it runs is decided in realnode_config.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from llamaops_sandbox import config, processes
from llamaops_sandbox import realnode_config as rc
from llamaops_sandbox.layout import Layout
from llamaops_sandbox.processes import SandboxError

NODE_READY_TIMEOUT_S = 180.0
HOST_TOOLS = ("/usr/bin/containerd", "/usr/sbin/runc", "/usr/bin/socat", "/usr/lib/cni/bridge", "/usr/bin/ctr")


def missing_host_tools() -> list[str]:
    return [tool for tool in HOST_TOOLS if not Path(tool).exists()]


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=120)  # noqa: S603


def _sysctl(name: str, value: str) -> None:
    Path("/proc/sys", *name.split(".")).write_text(value)


def prepare_host() -> None:
    """Forwarding on, bridged traffic through iptables (kube-proxy's rules), and the pods' bridge up with its
    gateway address, so the API server forwarder can listen there before the first pod exists."""
    if os.geteuid() != 0:
        raise SandboxError("the real node needs root (network namespaces, cgroups, iptables)")
    _sysctl("net.ipv4.ip_forward", "1")
    with contextlib.suppress(OSError):
        _sysctl("net.bridge.bridge-nf-call-iptables", "1")
    if _run("ip", "link", "show", rc.BRIDGE, check=False).returncode != 0:
        _run("ip", "link", "add", rc.BRIDGE, "type", "bridge")
    addresses = _run("ip", "-o", "-4", "addr", "show", "dev", rc.BRIDGE).stdout
    if f"{rc.GATEWAY}/" not in addresses:
        _run("ip", "addr", "add", f"{rc.GATEWAY}/{rc.POD_CIDR.split('/')[1]}", "dev", rc.BRIDGE)
    _run("ip", "link", "set", rc.BRIDGE, "up")


def write_files(layout: Layout, ports: dict[str, int]) -> None:
    p = rc.paths(layout)
    for key in ("node", "cni_conf", "cni_data", "kubelet_root", "pod_logs", "registry_data", "models"):
        p[key].mkdir(parents=True, exist_ok=True)
    hosts = p["registry_hosts"] / rc.registry_address(ports["registry"])
    hosts.mkdir(parents=True, exist_ok=True)
    (hosts / "hosts.toml").write_text(rc.registry_hosts_toml(ports["registry"]))
    p["registry_config"].write_text(yaml.safe_dump(rc.registry_config(layout, ports["registry"])))
    p["containerd_config"].write_text(rc.containerd_config(layout, ports["registry"], ports["containerd_metrics"]))
    (p["cni_conf"] / f"10-{rc.CNI_NETWORK}.conflist").write_text(json.dumps(rc.cni_conflist(layout), indent=2))
    kubelet = rc.kubelet_config(layout, ports["kubelet"], ports["kubelet_healthz"])
    p["kubelet_config"].write_text(yaml.safe_dump(kubelet, sort_keys=False))
    proxy = rc.kube_proxy_config(layout, ports["kube_proxy_healthz"], ports["kube_proxy_metrics"])
    p["kube_proxy_config"].write_text(yaml.safe_dump(proxy, sort_keys=False))
    server, pki = f"https://127.0.0.1:{ports['apiserver']}", layout.pki
    for stem, path in (("node", p["kubelet_kubeconfig"]), ("kube-proxy", p["kube_proxy_kubeconfig"])):
        cfg = config.kubeconfig(server, pki / "ca.crt", pki / f"{stem}.crt", pki / f"{stem}.key", stem)
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        path.chmod(0o600)


def _ctr(layout: Layout, *args: str) -> subprocess.CompletedProcess[str]:
    socket = rc.paths(layout)["containerd_socket"]
    return _run("/usr/bin/ctr", f"--address={socket}", "--namespace=k8s.io", *args, check=False)


def stop_containers(layout: Layout) -> None:
    """Kill and remove every container of the node (containerd keeps them, and their shims, past the kubelet)."""
    if not rc.paths(layout)["containerd_socket"].exists():
        return
    tasks = _ctr(layout, "tasks", "ls", "-q").stdout.split()
    for task in tasks:
        _ctr(layout, "tasks", "kill", "--all", "--signal", "SIGKILL", task)
    deadline = time.monotonic() + 20
    while tasks and time.monotonic() < deadline:
        for task in tasks:
            _ctr(layout, "tasks", "delete", "--force", task)
        tasks = _ctr(layout, "tasks", "ls", "-q").stdout.split()
    for container in _ctr(layout, "containers", "ls", "-q").stdout.split():
        _ctr(layout, "containers", "delete", container)


def _shims(layout: Layout) -> list[int]:
    socket = str(rc.paths(layout)["containerd_socket"])
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            argv = processes.command_line(int(entry.name)) or []
            if argv and "containerd-shim" in argv[0] and socket in argv:
                found.append(int(entry.name))
    return found


def cleanup(layout: Layout) -> None:
    """After the node's processes stopped: shims, mounts and network namespaces a killed run may have left."""
    for pid in _shims(layout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    root = rc.paths(layout)["kubelet_root"]
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    state = str(rc.paths(layout)["containerd_state"])
    for mount in sorted((m for m in mounts if m.startswith((str(root), state))), key=len, reverse=True):
        _run("umount", "-l", mount, check=False)
    for line in _run("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith("cni-"):
            _run("ip", "netns", "delete", name, check=False)
    shutil.rmtree(rc.paths(layout)["cni_data"], ignore_errors=True)


def components(layout: Layout, ports: dict[str, int]) -> list[config.Component]:
    argvs, urls = rc.argvs(layout, ports), rc.health_urls(ports)
    return [config.Component(name, argvs[name], urls[name]) for name in rc.COMPONENTS]


def join(layout: Layout, kubectl: Callable[..., str], apiserver_port: int, log: Callable[[str], None]) -> None:
    """Wait for the kubelet's node to be Ready, advertise its GPUs, and give pods a route to the API server."""
    deadline = time.monotonic() + NODE_READY_TIMEOUT_S
    while True:
        out = kubectl("get", "nodes", rc.NODE_NAME, "-o", "json", "--ignore-not-found")
        node: dict[str, Any] = json.loads(out) if out.strip() else {}
        conditions = node.get("status", {}).get("conditions", [])
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            break
        if time.monotonic() > deadline:
            raise SandboxError(
                f"the real node {rc.NODE_NAME} did not become Ready; last lines of the kubelet's log:\n"
                + processes.tail(layout.log("kubelet"))
            )
        time.sleep(1)
    kubectl(
        "patch", "node", rc.NODE_NAME, "--subresource=status", "--type=json", "-p", json.dumps(rc.gpu_capacity_patch())
    )
    kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        "-",
        stdin=json.dumps(rc.kubernetes_endpoints(apiserver_port)),
    )
    log(f"real node {rc.NODE_NAME} Ready with {rc.GPU_COUNT} x {rc.GPU_PRODUCT} (nvidia.com/gpu)")
