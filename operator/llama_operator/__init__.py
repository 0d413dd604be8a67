"""llama-operator: serve Llama models on a patched vLLM, refuse known-crashing configurations, repair crash loops."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("llama-operator")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
