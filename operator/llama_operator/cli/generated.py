"""What the commands that generate a checked-in file share (`crd`, `plugin-facts`): print it, write it, or check
that the file on disk is current."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def register_generator(
    subparsers: Any, command: str, summary: str, description: str, file_name: str, folder: Path, text: Callable[[], str]
) -> None:
    """A subcommand printing ``text()``; --write stores it as ``--dir``/``file_name``, --check compares with it."""
    parser: argparse.ArgumentParser = subparsers.add_parser(command, help=summary, description=description)
    parser.add_argument("--dir", type=Path, default=folder, help=f"folder of {file_name} (default: {folder})")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help=f"write DIR/{file_name}")
    mode.add_argument("--check", action="store_true", help=f"exit 1 when DIR/{file_name} is not up to date")
    parser.set_defaults(func=lambda args: emit(args, text(), args.dir / file_name, command))


def emit(args: argparse.Namespace, text: str, target: Path, command: str) -> int:
    """Print ``text``, or with --write store it as ``target``, or with --check compare it with ``target``."""
    if args.write:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        print(f"wrote {target}")
        return 0
    if args.check:
        try:
            current = target.read_text(encoding="utf-8")
        except OSError as error:
            print(f"cannot read {target}: {error.strerror}", file=sys.stderr)
            return 1
        if current != text:
            print(f"{target} is out of date: run `llama-operator {command} --write`", file=sys.stderr)
            return 1
        print(f"{target} is up to date")
        return 0
    sys.stdout.write(text)
    return 0
