"""Namespaces created while kopf starts (or relists) its namespace watch are watched too.

kopf (1.45.2, the pinned version) observes namespaces matching `--namespace` globs in two steps: it lists them, then
starts a watch whose first step is a list of its own, and it drops that second listing (its events have no type,
``process_discovered_namespace_event`` returns on them). A namespace created between the two lists is in neither
the first listing nor any watch event: its LlamaDeployments were never reconciled, until the operator restarted.
The same holds for a namespace created while the watch relists after a 410 Gone. This was seen in the sandbox, for
a namespace created within the operator's first seconds (tests/integration/test_namespace_race.py).

``install()`` makes the watch's listings count: revising the watched set with a listed namespace is what kopf does
with the first listing, so it is always safe, only sometimes redundant.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from kopf._cogs.structs import bodies, references
from kopf._core.reactor import observation

KOPF_DROPS_LISTINGS = observation.process_discovered_namespace_event


async def process_namespace_event(
    *,
    raw_event: bodies.RawEvent,
    namespaces: Collection[references.NamespacePattern],
    insights: references.Insights,
    **_: Any,
) -> None:
    """kopf's processor of namespace watch events, listings included."""
    async with insights.revised:
        observation.revise_namespaces(raw_events=[raw_event], insights=insights, namespaces=namespaces)
        insights.revised.notify_all()


def install() -> None:
    """Before kopf.run: kopf's namespace observer looks the processor up in its module when it starts."""
    observation.process_discovered_namespace_event = process_namespace_event
