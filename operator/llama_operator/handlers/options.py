"""Operator options from the command line, set once before kopf starts (read by the startup handler)."""

from __future__ import annotations

from dataclasses import dataclass

from llama_operator.render.images import ImageRewrite


@dataclass(frozen=True, slots=True)
class PeeringOptions:
    """kopf peering of operator replicas (`--peering NAME`): one replica acts, the others stand by.

    ``identity`` is this replica's key in the peering object; ``priority`` decides who acts (highest live one);
    ``lifetime_s`` is how long a replica's keep-alive counts, i.e. how soon a killed replica is replaced;
    ``clusterwide`` uses the ClusterKopfPeering even when only some namespaces are watched.
    """

    name: str
    identity: str
    priority: int
    lifetime_s: int
    clusterwide: bool = False


@dataclass(frozen=True, slots=True)
class Options:
    metrics_address: str = "0.0.0.0"  # noqa: S104 - in a pod, Prometheus scrapes the pod IP
    metrics_port: int = 8081
    peering: PeeringOptions | None = None
    # `--image-rewrite FROM=TO` (render.images): applied to every image the operator renders, and what status shows.
    image_rewrites: tuple[ImageRewrite, ...] = ()
    # `--namespace` patterns (kopf's globs); empty: every namespace. The fleet's Prometheus query selects by them.
    namespaces: tuple[str, ...] = ()


_current = Options()


def set_options(options: Options) -> None:
    global _current
    _current = options


def options() -> Options:
    return _current
