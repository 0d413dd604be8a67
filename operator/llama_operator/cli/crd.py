"""`llama-operator crd`: print or write the LlamaDeployment CustomResourceDefinition generated from the models."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from llama_operator.api.crd import CRD_FILE, crd_yaml


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "crd",
        help="print (or write) the LlamaDeployment CRD",
        description=(
            f"Generate the LlamaDeployment CustomResourceDefinition from the pydantic models. Without options it "
            f"prints the YAML; --write stores it as {CRD_FILE} in --dir; --check exits 1 when that file differs."
        ),
    )
    parser.add_argument("--dir", type=Path, default=Path("crds"), help="folder of the CRD file (default: crds)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help=f"write DIR/{CRD_FILE}")
    mode.add_argument("--check", action="store_true", help=f"exit 1 when DIR/{CRD_FILE} is not up to date")
    parser.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    text = crd_yaml()
    target: Path = args.dir / CRD_FILE
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
            print(f"{target} is out of date: run `llama-operator crd --write`", file=sys.stderr)
            return 1
        print(f"{target} is up to date")
        return 0
    sys.stdout.write(text)
    return 0
