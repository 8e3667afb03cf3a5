"""Placement arithmetic: a write waits for the nearest majority, plus a trip to the leader."""

from __future__ import annotations

import math

from cluster.placement import plan, quorum_rtt, write_ms

# dc1 and dc2 are close; dc3 is far from both.
RTT = {
    frozenset(("dc1", "dc2")): 20.0,
    frozenset(("dc1", "dc3")): 100.0,
    frozenset(("dc2", "dc3")): 90.0,
}
DCS = ("dc1", "dc2", "dc3")


def test_a_leader_waits_for_its_nearest_other_replica() -> None:
    assert quorum_rtt("dc1", DCS, RTT) == 20
    assert quorum_rtt("dc3", DCS, RTT) == 90
    # With five replicas the leader needs the second nearest other replica.
    five = {**RTT, **{frozenset(("dc4", d)): 5.0 for d in DCS}}
    five |= {frozenset(("dc5", d)): 50.0 for d in (*DCS, "dc4")}
    assert quorum_rtt("dc1", (*DCS, "dc4", "dc5"), five) == 20


def test_a_client_elsewhere_pays_one_more_round_trip_to_the_leader() -> None:
    assert write_ms("dc1", "dc1", DCS, RTT) == 20
    assert write_ms("dc1", "dc3", DCS, RTT) == 120


def test_losing_a_datacenter() -> None:
    shard = plan(7, "dc1", DCS, DCS, RTT)
    assert [o.leader_dc for o in shard.options] == list(DCS)
    assert shard.options[0].write_ms == {"dc1": 20, "dc2": 40, "dc3": 120}
    assert shard.options[0].linearizable_read_ms == {"dc1": 0, "dc2": 20, "dc3": 100}
    losses = {loss.lost_dc: loss for loss in shard.losses}
    # Losing dc2, dc1's leader must wait for dc3: every write gets slower.
    assert losses["dc2"].leader_dcs == ("dc1",)
    assert losses["dc2"].write_ms == {"dc1": 100, "dc3": 200}
    # Losing the leader's DC: either survivor may lead; the worst case is shown.
    assert losses["dc1"].available and losses["dc1"].leader_dcs == ("dc2", "dc3")
    assert losses["dc1"].write_ms == {"dc2": 180, "dc3": 180}


def test_without_a_majority_the_shard_is_unavailable() -> None:
    shard = plan(1, "dc1", ("dc1", "dc2"), ("dc1", "dc2"), RTT)
    assert all(not loss.available for loss in shard.losses)
    assert all(v is None for loss in shard.losses for v in loss.write_ms.values())


def test_an_unmeasured_pair_is_not_a_number() -> None:
    assert math.isnan(write_ms("dc1", "dc9", DCS, RTT) or 0.0)
