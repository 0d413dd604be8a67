"""kopf entry points. Importing this package registers every handler with kopf's default registry."""

from llama_operator.handlers import startup

__all__ = ["startup"]
