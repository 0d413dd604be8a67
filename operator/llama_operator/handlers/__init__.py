"""kopf entry points. Importing this package registers every handler with kopf's default registry."""

from llama_operator.handlers import crashloop, reconcile, startup

__all__ = ["crashloop", "reconcile", "startup"]
