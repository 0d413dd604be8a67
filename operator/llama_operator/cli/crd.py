"""`llama-operator crd`: print or write the LlamaDeployment CustomResourceDefinition generated from the models."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from llama_operator.api.crd import CRD_FILE, crd_yaml
from llama_operator.cli.generated import add_modes, emit


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
    add_modes(parser, CRD_FILE)
    parser.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    return emit(args, crd_yaml(), args.dir / CRD_FILE, "crd")
