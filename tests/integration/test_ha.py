"""High availability: two operator replicas with kopf peering, as the chart runs them. Exactly one acts; when it is
SIGKILLed the standby takes over and reconciles what changed meanwhile.

The measured failover time is printed, not asserted (benchmarks/failover.py reports it over several runs).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.integration.conftest import Sandbox, wait_for
from tests.integration.ha_pair import (
    RECONCILED,
    RESUMED,
    Pair,
    acting,
    failover,
    identity,
    log_count,
    pair_of_replicas,
    peers,
)
from tests.integration.llamas import Llamas, llama

pytestmark = pytest.mark.integration

# Seconds for kopf to deliver a change to the acting replica and finish its handler: after this a standby that
# were acting too would have logged a reconcile as well.
SETTLE_S = 5.0


@pytest.fixture
def pair(sandbox: Sandbox, llama_crd: str) -> Iterator[Pair]:
    with pair_of_replicas(sandbox) as pair:
        yield pair


def test_one_replica_acts_and_the_standby_takes_over_when_it_is_killed(sandbox: Sandbox, pair: Pair) -> None:
    first, second = pair.start(), pair.start()
    status = peers(sandbox, pair.name)
    assert set(status) == {identity(first), identity(second)}
    priorities = {int(record["priority"]) for record in status.values()}
    assert len(priorities) == 2, status  # random priorities: no tie (a tie would pause both)
    assert all(record["lifetime"] == 15 for record in status.values())  # the chart's peering.lifetime
    active, (standby,) = pair.settle()
    print(f"\nactive {identity(active)} (priority {status[identity(active)]['priority']}), "
          f"standby {identity(standby)} (priority {status[identity(standby)]['priority']})")  # fmt: skip

    namespace = pair.namespace
    llamas = Llamas(sandbox, namespace)
    names = ["alpha", "beta", "gamma"]
    for name in names:
        llamas.create(llama(name, namespace))
    for name in names:
        wait_for(f"{name} Running", lambda n=name: llamas.running(n))
    assert log_count(active, RECONCILED) >= len(names)
    assert log_count(standby, RECONCILED) == 0
    assert "on_llama_event" not in standby.log_text()  # kopf delivered it no event at all
    assert acting(active)
    assert not acting(standby)

    # A spec change is reconciled exactly once, by the active replica.
    before = log_count(active, RECONCILED)
    llamas.patch_spec("beta", {"engine": {"maxNumSeqs": 32}})
    wait_for("beta Running at its new generation", lambda: llamas.running("beta"))
    assert "--max-num-seqs 32" in " ".join(llamas.status("beta")["effective"]["args"])
    time.sleep(SETTLE_S)
    assert log_count(active, RECONCILED) == before + 1
    assert log_count(standby, RECONCILED) == 0

    # SIGKILL the active replica: no goodbye in the peering object; the standby waits out its lifetime.
    # Meanwhile a spec changes while no replica acts.
    took = failover(
        sandbox, pair, "after-kill", meanwhile=lambda: llamas.patch_spec("alpha", {"engine": {"maxNumSeqs": 16}})
    )
    print(
        f"failover: the standby reconciled a LlamaDeployment created at the SIGKILL in {took.seconds:.1f} s "
        f"(the killed replica's last keep-alive was {took.record_age_s:.1f} s old; lifetime 15 s)"
    )
    assert active.proc is not None
    assert active.proc.returncode == -9
    assert RESUMED in standby.log_text()
    assert acting(standby)
    assert log_count(standby, RECONCILED) >= 1
    # kopf's autoclean drops the dead replica's record.
    wait_for("the killed replica's record removed", lambda: identity(active) not in peers(sandbox, pair.name))
    # The change made while no replica acted is reconciled too.
    wait_for("alpha reconciled by the new active replica", lambda: llamas.running("alpha"))
    assert "--max-num-seqs 16" in " ".join(llamas.status("alpha")["effective"]["args"])
