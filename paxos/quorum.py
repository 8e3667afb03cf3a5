"""Quorum arithmetic, kept pure so it can be checked against brute-force definitions.

Rules:
- A quorum is a strict majority of the voters; any two quorums intersect.
- Functions take plain mappings and never mutate them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from paxos.ids import NodeId, Slot


def quorum_size(voter_count: int) -> int:
    """The smallest number of voters that is a strict majority."""
    assert voter_count >= 1, voter_count
    return voter_count // 2 + 1


def pair_is_quorum(voter_count: int) -> bool:
    """Two voters (a leader and one follower) make a quorum: groups of two or three."""
    return voter_count > 1 and quorum_size(voter_count) == 2


def is_quorum(members: Iterable[NodeId], voters: Iterable[NodeId]) -> bool:
    """True when ``members`` contains a strict majority of ``voters``."""
    voter_set = set(voters)
    return len(voter_set.intersection(members)) >= quorum_size(len(voter_set))


def quorum_floor(values: Mapping[NodeId, int], voters: Iterable[NodeId]) -> int:
    """The largest ``x`` such that a quorum of voters reports a value >= ``x``.

    Used for the lease (the oldest heartbeat a quorum has acknowledged) and for progress:
    sort the voters' values descending and take the quorum-th one. Voters with no report
    count as 0.
    """
    voter_list = sorted(set(voters))
    ranked = sorted((values.get(v, 0) for v in voter_list), reverse=True)
    return ranked[quorum_size(len(voter_list)) - 1]


def chosen_prefix(acked_through: Mapping[NodeId, Slot], voters: Iterable[NodeId]) -> Slot:
    """The highest slot that a quorum has acknowledged everything up to."""
    return Slot(quorum_floor(acked_through, voters))
