"""Data the planner and the crash classifier decide with: model catalog, GPU catalog, vLLM known issues, the
patched image's crash-report signatures (the last two also feed the image's plugin: plugin_facts.py).

The facts live in YAML under ``data/`` with their sources; this package loads them once (``load_knowledge``) into
frozen dataclasses.
"""

from llama_operator.knowledge.catalog import Knowledge, load_knowledge
from llama_operator.knowledge.gpus import GpuFacts
from llama_operator.knowledge.issues import KnownIssue
from llama_operator.knowledge.models import ModelConfigError, ModelFacts, Quantization, model_facts_from_config

__all__ = [
    "GpuFacts",
    "Knowledge",
    "KnownIssue",
    "ModelConfigError",
    "ModelFacts",
    "Quantization",
    "load_knowledge",
    "model_facts_from_config",
]
