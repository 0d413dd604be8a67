"""High availability: the peering flags, kopf's settings, and the rule that keeps a standby replica's rechecks idle."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Mapping
from typing import Any

import kopf
import pytest
from kopf._cogs.aiokits import aiotoggles
from kopf._core.engines import peering as kopf_peering

from llama_operator.cli import build_parser
from llama_operator.cli.run import kopf_run_kwargs
from llama_operator.cli.run_peering import PRIORITY_RANGE, options_from_args, own_identity, random_priority
from llama_operator.handlers import rechecks
from llama_operator.handlers.options import PeeringOptions
from llama_operator.handlers.peering import ActiveGate, blockers, is_active
from llama_operator.handlers.startup import apply_settings

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
ME, PRIORITY = "op-a/1", 500


def record(priority: int, seconds_ago: float = 1.0, lifetime: int = 15) -> dict[str, Any]:
    return {
        "priority": priority,
        "lifetime": lifetime,
        "lastseen": (NOW - dt.timedelta(seconds=seconds_ago)).isoformat(),
    }


def parse(*argv: str) -> Any:
    return build_parser().parse_args(["run", *argv])


def test_peering_off_is_standalone_and_on_passes_identity_and_priority() -> None:
    off = parse("-n", "serving")
    assert options_from_args(off, "host/1", 7) is None
    assert kopf_run_kwargs(off, None)["standalone"] is True
    on = parse("-n", "team-*", "--peering", "llama")
    peers = options_from_args(on, "host/1", 7)
    assert peers == PeeringOptions(name="llama", identity="host/1", priority=7, lifetime_s=15, clusterwide=False)
    kwargs = kopf_run_kwargs(on, peers)
    assert (kwargs["peering_name"], kwargs["identity"], kwargs["priority"]) == ("llama", "host/1", 7)
    assert "standalone" not in kwargs


def test_an_explicit_priority_lifetime_and_cluster_scope_win_over_the_defaults() -> None:
    args = parse("-n", "a", "--peering", "p", "--peering-priority", "9", "--peering-lifetime", "20")
    assert options_from_args(args, "h/1", 123) == PeeringOptions("p", "h/1", 9, 20, False)
    wide = options_from_args(parse("-n", "team-*", "--peering", "p", "--peering-clusterwide"), "h/1", 1)
    assert wide is not None
    assert wide.clusterwide


def test_a_lifetime_too_short_to_keep_alive_is_refused() -> None:
    with pytest.raises(SystemExit):
        parse("--peering", "p", "--peering-lifetime", "2")


def test_random_priorities_are_in_range_and_the_identity_names_host_and_process() -> None:
    draws = {random_priority() for _ in range(200)}
    assert all(PRIORITY_RANGE[0] <= d <= PRIORITY_RANGE[1] for d in draws)
    assert len(draws) >= 199  # 2**31 values: two replicas practically never tie
    host, pid = own_identity().rsplit("/", 1)
    assert host
    assert pid.isdigit()


def test_startup_sets_kopfs_lifetime_and_scope_only_with_peering() -> None:
    settings = kopf.OperatorSettings()
    apply_settings(settings)
    assert (settings.peering.lifetime, settings.peering.clusterwide) == (60, False)  # kopf's defaults kept
    apply_settings(settings, PeeringOptions("p", "h/1", 5, 15, clusterwide=True))
    assert (settings.peering.lifetime, settings.peering.clusterwide) == (15, True)


@pytest.mark.parametrize(
    ("peers", "active"),
    [
        ({}, True),  # alone, even before our own first keep-alive
        ({ME: record(PRIORITY)}, True),
        ({ME: record(PRIORITY), "op-b/1": record(PRIORITY - 1)}, True),
        ({ME: record(PRIORITY), "op-b/1": record(PRIORITY + 1)}, False),
        ({ME: record(PRIORITY), "op-b/1": record(PRIORITY)}, False),  # a tie pauses both
        ({ME: record(PRIORITY), "op-b/1": record(PRIORITY + 1, seconds_ago=16)}, True),  # killed: expired
        ({ME: record(PRIORITY), "op-b/1": record(PRIORITY + 1, seconds_ago=14)}, False),  # not yet expired
        ({"op-b/1": {"priority": PRIORITY + 1}}, False),  # no lastseen: kopf counts it as seen now
        ({"op-b/1": {"priority": PRIORITY + 1, "lastseen": (NOW - dt.timedelta(seconds=59)).isoformat()}}, False),
    ],
)
def test_active_follows_kopfs_own_pause_decision(peers: dict[str, Any], active: bool) -> None:
    assert is_active(peers, ME, PRIORITY, NOW) is active
    assert kopf_pauses(peers) is (not active)


def kopf_pauses(peers: Mapping[str, Any]) -> bool:
    """kopf's own decision (its peering event processor) on the same status, as of now: shift the records so
    their ages relative to the real clock match their ages relative to NOW."""
    shift = dt.datetime.now(dt.UTC) - NOW
    shifted = {
        peer: {
            **rec,
            **(
                {"lastseen": (dt.datetime.fromisoformat(rec["lastseen"]) + shift).isoformat()}
                if "lastseen" in rec
                else {}
            ),
        }
        for peer, rec in peers.items()
    }

    async def decide() -> bool:
        settings = kopf.OperatorSettings()
        settings.peering.name, settings.peering.priority = "p", PRIORITY
        toggle = aiotoggles.Toggle(True)  # mandatory peering starts paused
        woken = asyncio.Event()
        woken.set()  # kopf would otherwise sleep until the blocking peers expire
        await kopf_peering.process_peering_event(
            raw_event={"type": "MODIFIED", "object": {"metadata": {"name": "p"}, "status": shifted}},
            namespace=None,
            resource=None,  # type: ignore[arg-type]  # only used for cleaning, which is off
            identity=kopf_peering.Identity(ME),
            settings=settings,
            autoclean=False,
            stream_pressure=woken,
            conflicts_found=toggle,
        )
        return toggle.is_on()

    return asyncio.run(decide())


def test_an_absent_peering_object_means_paused() -> None:
    assert is_active(None, ME, PRIORITY, NOW) is False


def test_blockers_name_the_live_peers_at_or_above_our_priority() -> None:
    peers = {ME: record(PRIORITY), "b": record(PRIORITY), "c": record(1), "d": record(10**6, seconds_ago=99)}
    assert blockers(peers, ME, PRIORITY, NOW) == ["b"]


def test_the_gate_reads_the_namespace_or_cluster_object_kopf_peers_with() -> None:
    reads: list[tuple[str, str | None]] = []
    objects: dict[str | None, dict[str, Any]] = {
        "ns-a": {"other/1": record(PRIORITY + 1)},
        "ns-b": {"other/1": record(PRIORITY - 1)},
        None: {},
    }

    def read(name: str, namespace: str | None) -> Mapping[str, Any] | None:
        reads.append((name, namespace))
        return objects.get(namespace)

    per_namespace = ActiveGate(PeeringOptions("p", ME, PRIORITY, 15), read, clock=lambda: NOW)
    assert per_namespace("ns-a") is False
    assert per_namespace("ns-b") is True
    assert per_namespace("ns-c") is False  # no KopfPeering there: kopf stays paused
    cluster = ActiveGate(PeeringOptions("p", ME, PRIORITY, 15, clusterwide=True), read, clock=lambda: NOW)
    assert cluster("ns-a") is True
    assert reads == [("p", "ns-a"), ("p", "ns-b"), ("p", "ns-c"), ("p", None)]


def test_rechecks_skip_namespaces_where_this_replica_stands_by(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rechecks, "INTERVAL_S", 0.01)
    seen: list[tuple[str, str]] = []
    asked: list[str] = []
    done = threading.Event()
    running = {"phase": "Running", "effective": {"args": ["--a"]}, "lastKnownGood": {"generation": 3, "args": []}}

    def look(namespace: str, name: str) -> None:
        seen.append((namespace, name))
        if len(seen) >= 3:
            done.set()

    def may_act(namespace: str) -> bool:
        asked.append(namespace)
        if namespace == "broken":
            raise RuntimeError("apiserver away")
        return namespace == "active"

    keys = [("active", "x"), ("standby", "y"), ("standby", "z"), ("broken", "w")]
    for key in keys:
        rechecks.track(key, running, 9)
    stop = threading.Event()
    rechecks.start({rechecks.KNOWN_GOOD: look, rechecks.CRASH_LOOP: look}, stop, may_act)
    try:
        assert done.wait(5)
    finally:
        stop.set()
        for key in keys:
            rechecks.forget(key)
    assert set(seen) == {("active", "x")}
    # Asked once per namespace per round, however many objects it holds.
    rounds = asked.count("active")
    assert asked.count("standby") in (rounds, rounds - 1)
