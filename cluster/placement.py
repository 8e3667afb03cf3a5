"""Where a shard's leader should be, and what each choice costs: pure arithmetic on RTTs.

The physics of a Multi-Paxos write with one replica per datacenter: the leader needs a
majority, itself plus the nearest others, so a write costs the leader's round trip to the
k-th nearest other replica (k = majority - 1), plus, for a client in another datacenter,
one round trip to reach the leader. A linearizable read under the leader's lease costs only
the trip to the leader; a bounded-staleness read is served by the client's own datacenter.
``plan`` tabulates that for every candidate leader datacenter and every client datacenter,
and what losing each datacenter does to the shard.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Rtt = Mapping[frozenset[str], float]  # round trip in ms between two datacenters


def rtt_between(rtt: Rtt, a: str, b: str) -> float:
    return 0.0 if a == b else rtt.get(frozenset((a, b)), float("nan"))


def quorum_rtt(
    leader_dc: str, replica_dcs: Sequence[str], rtt: Rtt, lost: str | None = None
) -> float | None:
    """The round trip a leader in ``leader_dc`` waits for a majority of ``replica_dcs``,
    with the replica in ``lost`` never answering (None: no majority is reachable)."""
    majority = len(replica_dcs) // 2 + 1
    others = sorted(
        rtt_between(rtt, leader_dc, dc) for dc in replica_dcs if dc not in (leader_dc, lost)
    )
    needed = majority - 1  # the leader's own replica counts
    if needed > len(others):
        return None
    return others[needed - 1] if needed > 0 else 0.0


def write_ms(
    leader_dc: str, client_dc: str, replica_dcs: Sequence[str], rtt: Rtt, lost: str | None = None
) -> float | None:
    """Expected network time of a write from ``client_dc`` (through a gateway there)."""
    quorum = quorum_rtt(leader_dc, replica_dcs, rtt, lost)
    return None if quorum is None else quorum + rtt_between(rtt, client_dc, leader_dc)


@dataclass(frozen=True, slots=True)
class LeaderOption:
    leader_dc: str
    write_ms: dict[str, float | None]  # per client datacenter
    linearizable_read_ms: dict[str, float]  # lease read at the leader, per client datacenter


@dataclass(frozen=True, slots=True)
class DcLoss:
    lost_dc: str
    available: bool  # a majority of replicas remains
    leader_dcs: tuple[str, ...]  # where the leader can be afterwards
    write_ms: dict[str, float | None]  # per surviving client DC, worst over leader_dcs


@dataclass(frozen=True, slots=True)
class ShardPlan:
    shard_id: int
    preferred_dc: str
    options: tuple[LeaderOption, ...]
    losses: tuple[DcLoss, ...]


def plan(
    shard_id: int,
    preferred_dc: str,
    replica_dcs: Sequence[str],
    client_dcs: Sequence[str],
    rtt: Rtt,
) -> ShardPlan:
    options = tuple(
        LeaderOption(
            leader_dc=leader,
            write_ms={c: write_ms(leader, c, replica_dcs, rtt) for c in client_dcs},
            linearizable_read_ms={c: rtt_between(rtt, c, leader) for c in client_dcs},
        )
        for leader in replica_dcs
    )
    losses = []
    for lost in replica_dcs:
        left = [dc for dc in replica_dcs if dc != lost]
        available = len(left) >= len(replica_dcs) // 2 + 1
        leaders = (preferred_dc,) if preferred_dc in left else tuple(left) if available else ()
        writes: dict[str, float | None] = {}
        for client in (c for c in client_dcs if c != lost):
            costs = [write_ms(leader, client, replica_dcs, rtt, lost) for leader in leaders]
            known = [c for c in costs if c is not None]
            writes[client] = max(known) if known and len(known) == len(costs) else None
        losses.append(DcLoss(lost, available, leaders, writes))
    return ShardPlan(shard_id, preferred_dc, options, tuple(losses))
