"""`llama-operator run`: start the kopf operator against the current kubeconfig (or in-cluster config)."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from llama_operator.cli import malloc, run_images, run_peering, run_webhook

if TYPE_CHECKING:
    from llama_operator.handlers.options import PeeringOptions

# Enough for kopf to parse and copy an object nested 10,000 levels deep, the most the apiserver stores (Go's JSON
# decoder stops there), at two frames a level when copying. Measured safe on 8 MiB stacks (main thread and workers).
OBJECT_RECURSION_LIMIT = 25_000

# The packages whose kopf handlers the operator registers. Importing them is what registers them.
HANDLER_MODULES = ("llama_operator.handlers",)


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "run",
        help="run the operator against the current kubeconfig",
        description=(
            "Run the operator. It logs in with the current kubeconfig context, or the in-cluster service "
            "account when running in a pod, and watches LlamaDeployments."
        ),
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        dest="namespaces",
        default=[],
        metavar="NS",
        help="watch only this namespace (repeatable; glob patterns allowed); the default is all namespaces",
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace (the default)")
    parser.add_argument(
        "--liveness",
        default="http://0.0.0.0:8080/healthz",
        metavar="URL",
        help="where kopf serves its liveness probe (default: %(default)s); empty to disable",
    )
    parser.add_argument(
        "--metrics-address",
        default="0.0.0.0",  # noqa: S104 - in a pod, Prometheus scrapes the pod IP
        metavar="ADDR",
        help="address of the operator's Prometheus /metrics (default: %(default)s; 127.0.0.1 in the sandbox)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ.get("LLAMAOPS_OPERATOR_METRICS_PORT", "8081")),
        metavar="PORT",
        help="port of /metrics (default: $LLAMAOPS_OPERATOR_METRICS_PORT, else 8081)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    run_peering.add_arguments(parser)
    run_webhook.add_arguments(parser)
    run_images.add_arguments(parser)
    parser.set_defaults(func=execute)


def kopf_run_kwargs(args: argparse.Namespace, peering: PeeringOptions | None = None) -> dict[str, Any]:
    """Translate the command line into keyword arguments for ``kopf.run`` (pure, unit-tested).

    ``peering`` (run_peering.options_from_args) adds this replica's identity and priority; the lifetime and
    scope are kopf settings, applied by the startup handler."""
    kwargs: dict[str, Any] = {
        "clusterwide": not args.namespaces,
        "namespaces": list(args.namespaces),
        "liveness_endpoint": args.liveness or None,
    }
    if args.peering:
        kwargs["peering_name"] = args.peering
        if peering is not None:
            kwargs.update(identity=peering.identity, priority=peering.priority)
    else:
        kwargs["standalone"] = True
    return kwargs


def execute(args: argparse.Namespace) -> int:
    import kopf  # imported lazily: `--version` and other subcommands need no event loop machinery

    from llama_operator.handlers.options import Options, set_options

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    try:
        rewrites = run_images.rewrites_from_args(args, os.environ)
    except ValueError as error:
        logging.getLogger(__name__).error("image rewrites: %s", error)
        return 2
    malloc.limit_arenas()  # before kopf starts its threads
    peering = run_peering.options_from_args(args, run_peering.own_identity(), run_peering.random_priority())
    set_options(
        Options(
            metrics_address=args.metrics_address,
            metrics_port=args.metrics_port,
            peering=peering,
            image_rewrites=rewrites,
            namespaces=tuple(args.namespaces),
        )
    )
    if rewrites:
        logging.getLogger(__name__).info("image rewrites: %s", ", ".join(map(str, rewrites)))
    for name in HANDLER_MODULES:
        importlib.import_module(name)
    from llama_operator.handlers import namespace_listing

    namespace_listing.install()  # a namespace made while kopf starts its watch is watched too
    try:
        webhook = run_webhook.options_from_args(args)
    except ValueError as error:
        logging.getLogger(__name__).error("admission webhook: %s", error)
        return 2
    if webhook is not None:
        from llama_operator.handlers import admission

        admission.enable(webhook)
    # kopf parses and copies whole objects recursively. At Python's default recursion limit (1,000) one
    # LlamaDeployment nested ~1,000 levels deep (spec.model.config.inline keeps unknown fields) ended the operator
    # and ~500 levels stalled it; the apiserver stores up to 10,000 (tests/unit/test_deep_objects.py).
    sys.setrecursionlimit(max(sys.getrecursionlimit(), OBJECT_RECURSION_LIMIT))
    kopf.run(**kopf_run_kwargs(args, peering))
    return 0
