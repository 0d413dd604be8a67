"""`llama-operator crd`: print or write the LlamaDeployment CustomResourceDefinition generated from the models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llama_operator.api.crd import CRD_FILE, crd_yaml
from llama_operator.cli.generated import register_generator


def register(subparsers: Any) -> None:
    register_generator(
        subparsers,
        "crd",
        "print (or write) the LlamaDeployment CRD",
        f"Generate the LlamaDeployment CustomResourceDefinition from the pydantic models. Without options it prints "
        f"the YAML; --write stores it as {CRD_FILE} in --dir; --check exits 1 when that file differs.",
        CRD_FILE,
        Path("crds"),
        crd_yaml,
    )
