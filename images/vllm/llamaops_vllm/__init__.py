"""llama-operator's vLLM general plugin.

vLLM calls `register()` through the `vllm.general_plugins` entry point in every process it starts (API server,
engine core, workers), sometimes more than once per process. Everything heavy is imported inside `register()`, so
installing the plugin costs nothing until vLLM loads it.
"""

__version__ = "0.1.0"

_registered = False


def register() -> None:
    """Apply the patches that match the installed vLLM. Re-entrant: a second call in a process does nothing."""
    global _registered
    if _registered:
        return
    _registered = True
    from llamaops_vllm.loader import apply_all

    apply_all()
