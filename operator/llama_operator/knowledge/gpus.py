"""GPU facts keyed by the ``nvidia.com/gpu.product`` node label."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GpuFacts:
    """One GPU board as GPU feature discovery labels it, with the vLLM defaults that depend on it."""

    product: str
    memory_mib: int
    gpus_per_node: int
    max_num_batched_tokens: int = 2048
    attention_backend: str = "FLASH_ATTN"
    aliases: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()

    @property
    def memory_gib(self) -> float:
        return self.memory_mib / 1024
