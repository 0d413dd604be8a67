"""The high-availability flags of `llama-operator run`: kopf peering between operator replicas (docs/ha.md)."""

from __future__ import annotations

import argparse
import os
import secrets
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llama_operator.handlers.options import PeeringOptions

DEFAULT_LIFETIME_S = 15
MIN_LIFETIME_S = 5
# Priorities are drawn from this range, so two replicas practically never tie (kopf pauses all tied replicas).
PRIORITY_RANGE = (1, 2**31 - 1)


def _lifetime(text: str) -> int:
    value = int(text)
    if value < MIN_LIFETIME_S:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_LIFETIME_S} seconds")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "high availability",
        "Several replicas with the same --peering NAME elect one active operator through kopf's peering object "
        "(KopfPeering NAME in each watched namespace, or ClusterKopfPeering NAME); the others stand by.",
    )
    group.add_argument(
        "--peering",
        default=None,
        metavar="NAME",
        help="kopf peering object for high availability; by default peering is off (standalone)",
    )
    group.add_argument(
        "--peering-priority",
        type=int,
        default=None,
        metavar="N",
        help="the highest live priority acts; equal priorities pause every replica (default: random per start)",
    )
    group.add_argument(
        "--peering-lifetime",
        type=_lifetime,
        default=DEFAULT_LIFETIME_S,
        metavar="SECONDS",
        help="how long a replica's keep-alive counts: a killed active replica is replaced within about this "
        "(keep-alives every lifetime minus 5-10 s; default: %(default)s)",
    )
    group.add_argument(
        "--peering-clusterwide",
        action="store_true",
        help="use the ClusterKopfPeering NAME even when watching chosen namespaces (one object for namespace "
        "patterns, instead of a KopfPeering in each matching namespace)",
    )


def own_identity() -> str:
    """This replica's key in the peering object. In a pod the hostname is the pod's name and a restarted container
    usually gets the same pid, so it takes over its own earlier record instead of waiting for it to expire."""
    return f"{socket.gethostname()}/{os.getpid()}"


def random_priority() -> int:
    low, high = PRIORITY_RANGE
    return low + secrets.randbelow(high - low + 1)


def options_from_args(args: argparse.Namespace, identity: str, drawn_priority: int) -> PeeringOptions | None:
    """The peering settings, or None when peering is off (pure: identity and the random draw come in)."""
    from llama_operator.handlers.options import PeeringOptions  # lazily: the handlers package imports kopf

    if not args.peering:
        return None
    return PeeringOptions(
        name=args.peering,
        identity=identity,
        priority=drawn_priority if args.peering_priority is None else args.peering_priority,
        lifetime_s=args.peering_lifetime,
        clusterwide=args.peering_clusterwide,
    )
