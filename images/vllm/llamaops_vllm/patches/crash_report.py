"""Crash report: on a fatal CUDA error or engine death, one classified line to the termination-message file.

vLLM logs a fatal engine error with its traceback ("EngineCore encountered a fatal error.") before the processes
exit, so a handler on vLLM's logger sees the real cause in whichever process hit it; uncaught exceptions are
caught through sys.excepthook and threading.excepthook.
"""

import logging
import sys
import threading
import traceback
from typing import Any

from llamaops_vllm import __version__
from llamaops_vllm.crash import classify, should_write

_MARK = "_llamaops_crash_report"


def report(text: str, path: str, vllm_version: str, uncaught: bool = False) -> bool:
    """Classify text and write it when it is a fatal signature (or an uncaught exception) more specific than
    what is already in the file. Returns whether it wrote."""
    crash = classify(text, vllm_version, __version__)
    if crash.signature == "unknown" and not uncaught:
        return False
    try:
        with open(path, "a+", encoding="utf-8") as f:
            f.seek(0)
            if not should_write(f.read(), crash):
                return False
            f.seek(0)
            f.truncate()
            f.write(crash.line() + "\n")
    except OSError:
        return False
    return True


class _FatalErrorHandler(logging.Handler):
    def __init__(self, path: str, vllm_version: str) -> None:
        super().__init__(level=logging.ERROR)
        self.path = path
        self.vllm_version = vllm_version
        setattr(self, _MARK, True)

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info))
        report(text, self.path, self.vllm_version)


def _reinstall_after_logging_config(install_handler: Any) -> None:
    # The API server loads plugins while it builds its argument parser, before it configures logging, and
    # dictConfig drops every handler of the loggers it configures: re-add ours after each configuration.
    try:
        from vllm import logger as vllm_logger_module
    except ImportError:
        return
    original = getattr(vllm_logger_module, "dictConfig", None)
    if original is None or getattr(original, _MARK, False):
        return

    def dict_config(config: Any) -> None:
        original(config)
        install_handler()

    setattr(dict_config, _MARK, True)
    vllm_logger_module.dictConfig = dict_config  # type: ignore[attr-defined]


def apply() -> str | None:
    from llamaops_vllm.loader import installed_vllm_version
    from llamaops_vllm.settings import read_settings

    path = read_settings().termination_message_path
    vllm_version = installed_vllm_version()

    def install_handler() -> None:
        vllm_logger = logging.getLogger("vllm")
        if not any(getattr(h, _MARK, False) for h in vllm_logger.handlers):
            vllm_logger.addHandler(_FatalErrorHandler(path, vllm_version))

    install_handler()
    _reinstall_after_logging_config(install_handler)

    previous_hook = sys.excepthook
    if not getattr(previous_hook, _MARK, False):

        def excepthook(exc_type: Any, exc: Any, tb: Any) -> None:
            report("".join(traceback.format_exception(exc_type, exc, tb)), path, vllm_version, uncaught=True)
            previous_hook(exc_type, exc, tb)

        setattr(excepthook, _MARK, True)
        sys.excepthook = excepthook

    previous_thread_hook = threading.excepthook
    if not getattr(previous_thread_hook, _MARK, False):

        def thread_hook(args: Any) -> None:
            if args.exc_type is not SystemExit:
                text = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
                report(text, path, vllm_version, uncaught=True)
            previous_thread_hook(args)

        setattr(thread_hook, _MARK, True)
        threading.excepthook = thread_hook
    return None
