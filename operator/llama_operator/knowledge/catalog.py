"""Loads the YAML data once into a ``Knowledge`` bundle with lookup helpers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from typing import Any

import yaml
from packaging.version import Version

from llama_operator.knowledge.gpus import GpuFacts, gpu_facts_from_entry, gpu_index
from llama_operator.knowledge.issues import KnownIssue, known_issue_from_dict
from llama_operator.knowledge.models import ModelFacts, Quantization, model_facts_from_config
from llama_operator.knowledge.observed import ObservedNodes


@dataclass(frozen=True, slots=True)
class MemoryConstants:
    """Planner constants from data/planner.yaml (see the comments there for their calibration)."""

    fixed_gib: float
    multi_gpu_gib: float
    block_size: int
    # First vLLM release whose hybrid KV-cache manager sizes chunked-local layers to about one chunk by default.
    hybrid_chunked_local_from: Version
    # First release whose chunked-local cap counts every in-flight batch (max_in_flight_tokens), not one.
    in_flight_batches_from: Version
    # First release giving GPUs of >= 160 GiB the 16,384-token max_num_batched_tokens default.
    large_gpu_batch_from: Version
    # Half-width of the reserve's error band (GiB per GPU), and what TP x PP > 1 adds to it: what vLLM decides at
    # runtime (activation peak, CUDA graphs, communication buffers). Refusals use reserve - band, suggestions
    # reserve + band.
    band_gib: float
    multi_gpu_band_gib: float
    # Quantization methods vLLM refuses from a release on without --allow-deprecated-quantization.
    deprecated_quantization: tuple[str, ...] = ()
    deprecated_quantization_from: Version | None = None


@dataclass(frozen=True, slots=True)
class Defaults:
    """vLLM defaults the planner assumes when the spec leaves a setting out, and the default images."""

    gpu_memory_utilization: float
    max_num_seqs: int
    patched_image: str
    upstream_image: str


@dataclass(frozen=True, slots=True)
class Knowledge:
    """Everything the planner reads, indexed for constant-time lookups."""

    models: tuple[ModelFacts, ...]
    gpus: tuple[GpuFacts, ...]
    issues: tuple[KnownIssue, ...]
    memory: MemoryConstants
    defaults: Defaults
    _model_index: Mapping[str, ModelFacts]
    _gpu_index: Mapping[str, GpuFacts]
    # The cluster's GPU nodes (handlers.nodes), for the capacity check; None when they are not known (offline, no
    # right to list nodes, not listed yet).
    nodes: ObservedNodes | None = None

    def model(self, name: str) -> ModelFacts | None:
        """Look a model up by catalog name, alias or Hugging Face id (case-insensitive)."""
        return self._model_index.get(name.strip().lower())

    def gpu(self, product: str) -> GpuFacts | None:
        """Look a GPU up by its ``nvidia.com/gpu.product`` label or an alias (case-insensitive)."""
        return self._gpu_index.get(product.strip().lower())

    def with_observed_gpus(self, observed: Iterable[GpuFacts]) -> Knowledge:
        """This knowledge, also knowing GPUs seen on the cluster's nodes (knowledge.observed) under products the
        catalog lacks; ``gpus`` stays the catalog's. The catalog wins for a product it has."""
        extra = {gpu.product.lower(): gpu for gpu in observed if gpu.product.lower() not in self._gpu_index}
        return replace(self, _gpu_index={**self._gpu_index, **extra}) if extra else self

    def with_nodes(self, nodes: ObservedNodes) -> Knowledge:
        """This knowledge, also knowing the cluster's GPU nodes (their allocatable GPUs, labels and taints)."""
        return replace(self, nodes=nodes)

    def issue(self, issue_id: str) -> KnownIssue | None:
        """A known issue by its id."""
        return next((issue for issue in self.issues if issue.id == issue_id), None)


# PyYAML's C loader where the wheel has it: every command and the operator read these files at start-up, and the
# pure-Python loader took about a tenth of a second for them. Both loaders read them the same
# (tests/unit/test_knowledge_data.py compares them file by file).
_LOADER: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read(name: str) -> Any:
    text = resources.files("llama_operator.knowledge").joinpath("data", name).read_text(encoding="utf-8")
    return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader, C or pure


def _model(entry: Mapping[str, Any]) -> ModelFacts:
    quant = entry.get("quantization")
    return model_facts_from_config(
        entry["config"],
        name=str(entry["name"]),
        parameters=float(entry["parameters"]),
        vision_parameters=float(entry.get("vision_parameters", 0)),
        quantization=Quantization(str(quant["method"]), float(quant["weight_bytes"]), str(quant["modules"]))
        if quant
        else None,
        hf_ids=tuple(entry.get("hf_ids", ())),
        aliases=tuple(entry.get("aliases", ())),
        sources=tuple(str(source) for source in entry.get("sources", ())),
    )


def build_knowledge(models: Any, gpus: Any, issues: Any, planner: Any) -> Knowledge:
    """Build the bundle from parsed YAML documents (separate from I/O so tests can feed their own data)."""
    model_facts = tuple(_model(entry) for entry in models["models"])
    gpu_facts = tuple(gpu_facts_from_entry(entry) for entry in gpus["gpus"])
    model_index: dict[str, ModelFacts] = {}
    for facts in model_facts:
        for key in (facts.name, *facts.hf_ids, *facts.aliases):
            if key.lower() in model_index:
                raise ValueError(f"model catalog: {key!r} is listed twice")
            model_index[key.lower()] = facts
    memory = planner["memory"]
    defaults = planner["defaults"]
    return Knowledge(
        models=model_facts,
        gpus=gpu_facts,
        issues=tuple(known_issue_from_dict(entry) for entry in issues["issues"]),
        memory=MemoryConstants(
            fixed_gib=float(memory["fixed_gib"]),
            multi_gpu_gib=float(memory["multi_gpu_gib"]),
            block_size=int(memory["block_size"]),
            hybrid_chunked_local_from=Version(str(planner["kv_cache"]["hybrid_chunked_local_from"])),
            in_flight_batches_from=Version(str(planner["kv_cache"]["in_flight_batches_from"])),
            large_gpu_batch_from=Version(str(planner["batching"]["large_gpu_batch_from"])),
            band_gib=float(memory["band_gib"]),
            multi_gpu_band_gib=float(memory["multi_gpu_band_gib"]),
            deprecated_quantization=tuple(str(m) for m in planner["deprecated_quantization"]["methods"]),
            deprecated_quantization_from=Version(str(planner["deprecated_quantization"]["refused_from"])),
        ),
        defaults=Defaults(
            gpu_memory_utilization=float(defaults["gpu_memory_utilization"]),
            max_num_seqs=int(defaults["max_num_seqs"]),
            patched_image=str(defaults["patched_image"]),
            upstream_image=str(defaults["upstream_image"]),
        ),
        _model_index=model_index,
        _gpu_index=gpu_index(gpu_facts),
    )


@cache
def load_knowledge() -> Knowledge:
    """The packaged catalogs, parsed once per process."""
    return build_knowledge(_read("models.yaml"), _read("gpus.yaml"), _read("known_issues.yaml"), _read("planner.yaml"))
