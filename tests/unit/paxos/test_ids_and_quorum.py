"""Ballots and quorum arithmetic, checked against their definitions."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from paxos import Ballot, NodeId, Slot, chosen_prefix, is_quorum, quorum_floor, quorum_size

node_ids = st.integers(1, 9).map(NodeId)
ballots = st.builds(Ballot, st.integers(0, 50), node_ids)


@given(ballots, ballots, ballots)
def test_ballots_are_totally_ordered(a: Ballot, b: Ballot, c: Ballot) -> None:
    """Exactly one of a<b, a==b, a>b holds, and the order is transitive."""
    assert sum((a < b, a == b, a > b)) == 1
    if a <= b <= c:
        assert a <= c


@given(ballots, node_ids)
def test_successor_is_above_and_owned(b: Ballot, node: NodeId) -> None:
    """A node's next ballot beats the one it saw and carries its own id (no two nodes collide)."""
    nxt = b.successor(node)
    assert nxt > b
    assert nxt.node_id == node


@given(ballots)
def test_zero_is_below_every_issued_ballot(b: Ballot) -> None:
    """Ballot.ZERO means "nothing promised yet" and sorts below any ballot a node can issue."""
    issued = Ballot(max(b.round, 1), b.node_id)
    assert issued > Ballot.ZERO


@given(st.integers(1, 9))
def test_any_two_quorums_intersect(n: int) -> None:
    """Paxos Made Simple §2.2: every two majorities share a member."""
    voters = [NodeId(i) for i in range(1, n + 1)]
    q = quorum_size(n)
    for a in itertools.combinations(voters, q):
        for b in itertools.combinations(voters, q):
            assert set(a) & set(b)
    assert not is_quorum(voters[: q - 1], voters)
    assert is_quorum(voters[:q], voters)


def naive_quorum_floor(values: dict[NodeId, int], voters: list[NodeId]) -> int:
    """The definition, by brute force: the largest x that a quorum reports at least."""
    top = max(values.values(), default=0)
    return max(
        (
            x
            for x in range(top + 1)
            if sum(values.get(v, 0) >= x for v in voters) >= quorum_size(len(voters))
        ),
        default=0,
    )


voter_lists = st.integers(1, 7).map(lambda n: [NodeId(i) for i in range(1, n + 1)])


@given(
    voter_lists.flatmap(
        lambda vs: st.tuples(st.just(vs), st.dictionaries(st.sampled_from(vs), st.integers(0, 40)))
    )
)
def test_quorum_floor_agrees_with_the_definition(
    case: tuple[list[NodeId], dict[NodeId, int]],
) -> None:
    """The sorted-rank shortcut equals brute force for every report map."""
    voters, values = case
    assert quorum_floor(values, voters) == naive_quorum_floor(values, voters)
    assert chosen_prefix({k: Slot(v) for k, v in values.items()}, voters) == naive_quorum_floor(
        values, voters
    )
