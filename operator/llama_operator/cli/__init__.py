"""The `llama-operator` command line.

Each subcommand lives in its own module exposing ``register(subparsers)``; the module sets ``func`` on its
parser, which receives the parsed arguments and returns the exit status.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from llama_operator import __version__
from llama_operator.cli import crd, plugin_facts, run, validate

# Subcommand modules, in the order `--help` lists them.
SUBCOMMANDS = (run, validate, crd, plugin_facts)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llama-operator",
        description="Serve Llama models on Kubernetes with a patched vLLM.",
    )
    parser.add_argument("--version", action="version", version=f"llama-operator {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    status: int = args.func(args)
    return status
