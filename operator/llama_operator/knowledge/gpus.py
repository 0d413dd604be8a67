"""GPU facts keyed by the ``nvidia.com/gpu.product`` node label, and how GPU feature discovery (GFD) writes it."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# GFD appends these to the NVML device name (spaces made hyphens): "-MIG-<profile>" under the MIG "single" strategy
# (the label then describes one MIG slice), "-SHARED" when time-slicing gives each GPU several replicas and the
# resource is not renamed (k8s-device-plugin internal/lm/resource.go, productLabel).
SHARED_SUFFIX = "-SHARED"
_MIG = re.compile(r"^(?P<base>.+?)-MIG-(?P<profile>.+)$", re.IGNORECASE)
_CAPABILITY = re.compile(r"^(?P<major>[0-9]+)\.(?P<minor>[0-9]+)$")


@dataclass(frozen=True, slots=True)
class GpuFacts:
    """One GPU board as GPU feature discovery labels it, with the vLLM defaults that depend on it."""

    product: str
    memory_mib: int
    gpus_per_node: int
    attention_backend: str = "FLASH_ATTN"
    aliases: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    # CUDA compute capability (major, minor); None when unknown (a node without GFD's compute labels).
    compute_capability: tuple[int, int] | None = None
    # Nodes this product was seen on (Knowledge.with_observed_gpus); 0 for a catalog entry.
    observed_nodes: int = 0

    @property
    def memory_gib(self) -> float:
        return self.memory_mib / 1024


@dataclass(frozen=True, slots=True)
class ProductLabel:
    """A ``nvidia.com/gpu.product`` value split into the board and GFD's suffixes."""

    base: str  # the whole board's product, e.g. NVIDIA-A100-SXM4-80GB
    mig_profile: str | None  # e.g. 1g.10gb: the label names one MIG slice of ``base``
    shared: bool  # time-sliced: several pods share each GPU

    @property
    def unshared(self) -> str:
        """The label without -SHARED: the board, or the MIG slice."""
        return f"{self.base}-MIG-{self.mig_profile}" if self.mig_profile else self.base


def parse_product(label: str) -> ProductLabel:
    """Split a product label into board, MIG profile and time-slicing (GFD's productLabel, inverted)."""
    text = label.strip()
    shared = text.upper().endswith(SHARED_SUFFIX) and len(text) > len(SHARED_SUFFIX)
    if shared:
        text = text[: -len(SHARED_SUFFIX)]
    mig = _MIG.match(text)
    if mig:
        return ProductLabel(mig["base"], mig["profile"], shared)
    return ProductLabel(text, None, shared)


def parse_compute_capability(text: object) -> tuple[int, int]:
    """``"9.0"`` as (9, 0); the catalog writes it as a string so YAML keeps "10.0" and "10.3" apart from floats."""
    match = _CAPABILITY.match(str(text))
    if match is None:
        raise ValueError(f"compute capability {text!r} is not MAJOR.MINOR")
    return int(match["major"]), int(match["minor"])


def attention_backend_for(capability: tuple[int, int] | None) -> str:
    """vLLM 0.32's first valid attention backend for a decoder without MLA (vllm/platforms/cuda.py,
    _get_backend_priorities, then each backend's supports_compute_capability): FLASHINFER on 10.x, FLASH_ATTN from
    8.0 (FlashAttention and FlashInfer both need 8.0), TRITON_ATTN below. Unknown: FLASH_ATTN, the usual case."""
    if capability is None:
        return "FLASH_ATTN"
    if capability[0] == 10:
        return "FLASHINFER"
    return "FLASH_ATTN" if capability >= (8, 0) else "TRITON_ATTN"


def gpu_facts_from_entry(entry: Mapping[str, Any]) -> GpuFacts:
    """One entry of data/gpus.yaml."""
    return GpuFacts(
        product=str(entry["product"]),
        memory_mib=int(entry["memory_mib"]),
        gpus_per_node=int(entry["gpus_per_node"]),
        attention_backend=str(entry["attention_backend"]),
        aliases=tuple(str(alias) for alias in entry.get("aliases", ())),
        sources=tuple(str(source) for source in entry.get("sources", ())),
        compute_capability=parse_compute_capability(entry["compute_capability"]),
    )


def gpu_index(gpus: Iterable[GpuFacts]) -> dict[str, GpuFacts]:
    """Products and aliases, lower-cased, to their board; a name listed twice is a catalog error."""
    index: dict[str, GpuFacts] = {}
    for gpu in gpus:
        for key in (gpu.product, *gpu.aliases):
            if key.lower() in index:
                raise ValueError(f"GPU catalog: {key!r} is listed twice")
            index[key.lower()] = gpu
    return index
