"""Pure builders: a planned LlamaDeployment becomes Kubernetes manifests (dicts). No I/O here."""

from llama_operator.render.children import children
from llama_operator.render.labels import Owner, selector_labels

__all__ = ["Owner", "children", "selector_labels"]
