"""`llamaops-sandbox up|down|status|env`: the local cluster with fake GPU nodes (see e2e/README.md)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from llamaops_sandbox import cluster, config
from llamaops_sandbox.layout import Layout, default_cache
from llamaops_sandbox.processes import SandboxError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llamaops-sandbox",
        description=(
            "A real control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) with KWOK fake "
            "GPU nodes, kube-state-metrics and Prometheus, all on 127.0.0.1. Binaries are built on first use "
            "into $LLAMAOPS_CACHE/sandbox/bin (scripts/sandbox-build.sh). A development tool: it runs from a "
            "checkout (found above this package, or at $LLAMAOPS_REPO)."
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    up = actions.add_parser("up", help="start the sandbox (reuses a running one)")
    up.add_argument(
        "--shape", type=Path, default=None, metavar="FILE", help="node shape file (default: e2e/nodes.yaml)"
    )
    up.add_argument(
        "--real-node",
        action="store_true",
        help=(
            "also run a real node (kubelet, containerd, runc, CNI bridge, kube-proxy) and a local OCI registry, so "
            "pods really run; needs root and the packages `scripts/sandbox-build.sh host-packages` installs "
            "(e2e/README.md)"
        ),
    )
    up.set_defaults(func=_up)
    actions.add_parser("down", help="stop every sandbox process").set_defaults(func=_down)
    actions.add_parser("status", help="show each component; non-zero unless all are healthy").set_defaults(func=_status)
    actions.add_parser("env", help='print shell exports: eval "$(llamaops-sandbox env)"').set_defaults(func=_env)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status: int = args.func(args)
    except SandboxError as error:  # no checkout found, or a component failed: one line, not a traceback
        _log(f"failed: {error}")
        return 1
    return status


def _layout() -> Layout:
    return Layout(default_cache())


def _log(message: str) -> None:
    print(f"[sandbox] {message}", file=sys.stderr, flush=True)


def _up(args: argparse.Namespace) -> int:
    layout = _layout()
    began = time.monotonic()
    state, reused = cluster.up(layout, args.shape or layout.default_shape, _log, real_node=args.real_node)
    verb = "already running" if reused else f"up in {time.monotonic() - began:.1f}s"
    real = " and a real node" if state.real_node else ""
    _log(f"sandbox {verb}: {state.nodes} fake GPU nodes{real}, logs in {layout.logs}")
    print("# Use it with:\n" + "\n".join(config.env_lines(layout, state.ports)))
    print(f"# Prometheus: http://127.0.0.1:{state.ports.prometheus}   stop it with: llamaops-sandbox down")
    return 0


def _down(args: argparse.Namespace) -> int:
    stopped = cluster.down(_layout())
    _log(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


def _status(args: argparse.Namespace) -> int:
    layout = _layout()
    state = cluster.read_state(layout)
    if state is None:
        print("sandbox: not running")
        return 3
    conditions = cluster.health(layout, state)
    for name, condition in conditions.items():
        print(f"{name:<24} {condition:<10} pid {state.pids.get(name, '-')}  log {layout.log(name)}")
    print(f"kubeconfig: {layout.kubeconfig}   nodes: {state.nodes}")
    return 0 if set(conditions.values()) == {"healthy"} else 1


def _env(args: argparse.Namespace) -> int:
    layout = _layout()
    state = cluster.read_state(layout)
    if state is None:
        _log("not running; start it with: llamaops-sandbox up")
        return 3
    print("\n".join(config.env_lines(layout, state.ports)))
    return 0
