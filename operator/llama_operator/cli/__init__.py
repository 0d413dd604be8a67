"""The `llama-operator` command line.

Each subcommand lives in its own module exposing ``register(subparsers)``; the module sets ``func`` on its
parser, which receives the parsed arguments and returns the exit status.

A command line that names its command first builds that command's parser alone, so its modules are the only ones
imported: `llama-operator validate` in a CI job does not pay for kopf, the Kubernetes client, the webhook's
cryptography or the CRD generator (process start counts when a GitOps pipeline checks manifests, issue #21).
Its help and its errors are the same, as a subcommand's parser does not list the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

# Subcommands, in the order `--help` lists them; the module of "plugin-facts" is cli/plugin_facts.py.
SUBCOMMANDS = ("run", "validate", "crd", "plugin-facts")


class _Version(argparse.Action):
    """--version, reading the installed version only when asked (importlib.metadata costs a start-up)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        from llama_operator import __version__

        sys.stdout.write(f"llama-operator {__version__}\n")
        parser.exit()


def build_parser(commands: Sequence[str] = SUBCOMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llama-operator",
        description="Serve Llama models on Kubernetes with a patched vLLM.",
    )
    parser.add_argument("--version", action=_Version, help="show program's version number and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in commands:
        importlib.import_module(f"llama_operator.cli.{command.replace('-', '_')}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    commands = arguments[:1] if arguments[:1] and arguments[0] in SUBCOMMANDS else SUBCOMMANDS
    args = build_parser(commands).parse_args(arguments)
    status: int = args.func(args)
    return status
