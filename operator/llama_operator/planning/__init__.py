"""Validation and planning: findings, parallelism and memory plans, effective vLLM arguments.

``validate`` is the one entry point the CLI, the admission webhook and the operator share. It is pure: a
LlamaDeployment (a parsed YAML/JSON document) and the knowledge bundle in, a ``ValidationResult`` out, never an
exception.
"""

from llama_operator.planning.findings import Finding, Severity
from llama_operator.planning.memory import MemoryBreakdown, plan_memory
from llama_operator.planning.validate import ValidationResult, validate, validate_resource

__all__ = ["Finding", "MemoryBreakdown", "Severity", "ValidationResult", "plan_memory", "validate", "validate_resource"]
