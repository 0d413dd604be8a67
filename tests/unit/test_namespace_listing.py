"""The namespace-listing fix (handlers/namespace_listing.py), run on kopf's own Insights and observer functions."""

from __future__ import annotations

import asyncio
from typing import Any

from kopf._cogs.structs import references
from kopf._core.reactor import observation

from llama_operator.handlers import namespace_listing

PATTERNS = ["crash-*"]  # as kopf keeps `--namespace crash-*`


def _event(kind: str | None, name: str, deleted: bool = False) -> Any:
    meta: dict[str, Any] = {"name": name}
    if deleted:
        meta["deletionTimestamp"] = "2026-12-03T00:00:00Z"
    return {"type": kind, "object": {"metadata": meta}}


def _watched(processor: Any, *events: Any) -> set[Any]:
    insights = references.Insights()

    async def feed() -> None:
        for event in events:
            await processor(raw_event=event, namespaces=PATTERNS, insights=insights)

    asyncio.run(feed())
    return set(insights.namespaces)


def test_pinned_kopf_still_drops_the_watch_listing():
    """The bug the fix is for: when a kopf upgrade makes this fail, the fix can go."""
    assert _watched(namespace_listing.KOPF_DROPS_LISTINGS, _event(None, "crash-made-between-lists")) == set()


def test_a_namespace_in_the_watch_listing_is_watched():
    assert _watched(namespace_listing.process_namespace_event, _event(None, "crash-made-between-lists")) == {
        "crash-made-between-lists"
    }


def test_watch_events_are_revised_as_kopf_revises_them():
    events = [
        _event(None, "other-team"),  # not matching the pattern
        _event("ADDED", "crash-a"),
        _event("ADDED", "crash-b"),
        _event("DELETED", "crash-b", deleted=True),
    ]
    assert _watched(namespace_listing.process_namespace_event, *events) == {"crash-a"}
    # Without listings, kopf's own processor agrees on the watch events.
    assert _watched(namespace_listing.KOPF_DROPS_LISTINGS, *events[1:]) == {"crash-a"}


def test_install_replaces_the_processor_the_observer_uses():
    before = observation.process_discovered_namespace_event
    try:
        namespace_listing.install()
        assert observation.process_discovered_namespace_event is namespace_listing.process_namespace_event
    finally:
        observation.process_discovered_namespace_event = before
