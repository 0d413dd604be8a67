"""llama-operator: serve Llama models on a patched vLLM, refuse known-crashing configurations, repair crash loops."""

# The installed version, read on first use: importlib.metadata is a noticeable part of a command's start-up, and
# only `--version` and the operator's start-up log need it.
__version__: str

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("llama-operator")
    except PackageNotFoundError:  # running from a source tree that was never installed
        found = "0.0.0+unknown"
    globals()["__version__"] = found
    return found
