"""The rebalancer's choice of its next moves (``kvstore.api.rebalancer.next_moves``), the
operator state it reads (``kvstore.operator_state``), and the writes of it a node accepts
from another (``kvstore.api.operator_states.command_written``)."""

from __future__ import annotations

from cluster import NodeSpec, RangeDescriptor
from cluster.replica_placement import Move
from kvstore.api.operator_states import command_written
from kvstore.api.rebalancer import next_moves, sparing_leaders
from kvstore.model import Delete, Put, RequestId
from kvstore.operator_state import (
    DRAINING_VALUE,
    REBALANCE_KEY,
    REBALANCE_OFF,
    OperatorState,
    draining_key,
    parse,
)

# Two nodes per datacenter; node 2 joined (or came back from a drain) and holds nothing.
NODES = [NodeSpec(n, f"dc{(n + 1) // 2}", f"h:{n}") for n in range(1, 7)]
RANGES = [RangeDescriptor(i, bytes([96 + i]), bytes([97 + i]), (1, 3, 5)) for i in range(1, 5)]


def one(
    state: OperatorState, ranges: list[RangeDescriptor] = RANGES, nodes: list[NodeSpec] = NODES
) -> Move | None:
    moves = next_moves(ranges, nodes, state, replicas_per_dc=1)
    assert len(moves) <= 1
    return moves[0] if moves else None


def test_it_balances_onto_a_node_that_holds_nothing() -> None:
    move = one(OperatorState())
    assert move is not None and move.reason == "balance"
    assert (move.remove, move.add) == (1, 2)


def test_it_never_moves_onto_a_draining_node() -> None:
    move = one(OperatorState(draining=frozenset({2})))
    assert move is not None and move.add not in (1, 2)  # dc1 is left as it is
    assert one(OperatorState(draining=frozenset({2, 4, 6}))) is None


def test_it_leaves_the_ranges_of_a_draining_node_to_the_drain() -> None:
    """Node 1 drains and still holds ranges 1 and 2: the rebalancer moves neither (the
    drain does), but balances dc2 with ranges 3 and 4."""
    ranges = [
        *RANGES[:2],
        *(RangeDescriptor(i, bytes([96 + i]), bytes([97 + i]), (2, 3, 5)) for i in (3, 4)),
    ]
    moves = next_moves(
        ranges, NODES, OperatorState(draining=frozenset({1})), replicas_per_dc=1, at_once=4
    )
    assert moves and all(m.range_id in (3, 4) for m in moves), moves
    assert all(m.add not in (1,) for m in moves)


def test_it_makes_at_most_moves_at_once_each_of_another_range() -> None:
    moves = next_moves(RANGES, NODES, OperatorState(), replicas_per_dc=1, at_once=3)
    assert 1 < len(moves) <= 3
    assert len({m.range_id for m in moves}) == len(moves)


def test_it_stands_aside_while_a_replica_is_on_a_node_gone_from_the_list() -> None:
    listed = [n for n in NODES if n.node_id != 5]
    assert one(OperatorState(), nodes=listed) is None


def test_it_rebuilds_a_replica_left_on_a_removed_node_in_that_nodes_datacenter() -> None:
    """A move onto node 5 landed after node 5 was removed (it found 5 holding nothing):
    the replica on 5 is replaced by one on node 6, dc3's other node, in one change."""
    listed = [n for n in NODES if n.node_id != 5]
    gone = [n for n in NODES if n.node_id == 5]
    ranges = [RangeDescriptor(1, b"a", b"b", (1, 3, 5)), RangeDescriptor(2, b"b", b"c", (2, 4, 6))]
    moves = next_moves(ranges, listed, OperatorState(), replicas_per_dc=1, removed=gone)
    assert moves == [Move(1, 6, 5, "removed")]
    # A removed node still listed by this node (told late) counts as listed, not removed.
    assert next_moves(ranges, NODES, OperatorState(), replicas_per_dc=1, removed=gone) == []


def test_a_range_on_a_removed_node_gets_that_rebuild_or_no_move_at_all() -> None:
    """dc3's other node drains: nowhere to rebuild node 5's replicas in dc3 (a replica
    never leaves its datacenter), and no balance move of those ranges either (it would
    carry node 5 into the next configuration). Node 6 not draining, they are rebuilt."""
    listed = [n for n in NODES if n.node_id != 5]
    gone = [n for n in NODES if n.node_id == 5]
    ranges = [RangeDescriptor(i, bytes([96 + i]), bytes([97 + i]), (1, 3, 5)) for i in (1, 2)]
    state = OperatorState(draining=frozenset({6}))
    assert next_moves(ranges, listed, state, replicas_per_dc=1, removed=gone, at_once=4) == []
    moves = next_moves(ranges, listed, OperatorState(), replicas_per_dc=1, removed=gone, at_once=4)
    assert moves == [Move(1, 6, 5, "removed"), Move(2, 6, 5, "removed")]


def test_a_drain_mark_left_on_a_removed_node_does_not_stop_its_rebuild() -> None:
    """``node drain 5`` then ``node remove 5``, whose clearing of the mark failed."""
    listed = [n for n in NODES if n.node_id != 5]
    gone = [n for n in NODES if n.node_id == 5]
    ranges = [RangeDescriptor(1, b"a", b"b", (1, 3, 5)), RangeDescriptor(2, b"b", b"c", (2, 4, 6))]
    state = OperatorState(draining=frozenset({5}))
    moves = next_moves(ranges, listed, state, replicas_per_dc=1, removed=gone)
    assert moves == [Move(1, 6, 5, "removed")]


def test_it_fills_a_missing_replica() -> None:
    move = one(OperatorState(), ranges=[RangeDescriptor(1, b"a", b"b", (1, 3))])
    assert move is not None and move.reason == "missing" and move.add in (5, 6)


def test_it_does_nothing_once_balanced() -> None:
    balanced = [
        RangeDescriptor(1, b"a", b"b", (1, 3, 5)),
        RangeDescriptor(2, b"b", b"c", (2, 4, 6)),
    ]
    assert one(OperatorState(), ranges=balanced) is None


def test_the_operator_state_as_the_keys_say_it() -> None:
    assert parse([]) == OperatorState(frozenset(), rebalance=True)
    pairs = [
        (draining_key(4), DRAINING_VALUE),
        (draining_key(12), DRAINING_VALUE),
        (draining_key(5), b"something else"),  # not a state this version knows: ignored
        (draining_key(0)[:-1] + b"x", DRAINING_VALUE),  # not a node id: ignored
        (REBALANCE_KEY, REBALANCE_OFF),
    ]
    assert parse(pairs) == OperatorState(frozenset({4, 12}), rebalance=False)
    assert parse([(REBALANCE_KEY, b"on")]).rebalance


def test_a_node_accepts_only_the_writes_of_operator_state_it_sends() -> None:
    request = RequestId(0, 0)
    assert command_written(Put(request, draining_key(4), DRAINING_VALUE)) == draining_key(4)
    assert command_written(Put(request, REBALANCE_KEY, REBALANCE_OFF)) == REBALANCE_KEY
    assert command_written(Delete(request, draining_key(4))) == draining_key(4)
    refused = [
        Put(request, draining_key(4), DRAINING_VALUE, lease=7),  # would end with the lease
        Put(request, draining_key(4), b"anything"),
        Put(request, REBALANCE_KEY, DRAINING_VALUE),
        Put(request, b"\xff\xfeo/other", DRAINING_VALUE),
        Put(request, b"user-key", DRAINING_VALUE),
        Delete(request, b"user-key"),
    ]
    assert [command_written(c) for c in refused] == [None] * len(refused)


def test_a_balance_move_of_a_replica_its_node_leads_takes_a_follower_instead() -> None:
    """Node 1 leads range 1 (the planner's pick) but not 2, 3, 4: the move takes range 2's
    replica, which costs the load one short pause, not a hand-over and a transfer back."""
    move = one(OperatorState())
    assert move is not None and move.range_id == 1
    led = {1: frozenset({1})}
    (spared,) = sparing_leaders([move], RANGES, NODES, OperatorState(), led)
    assert (spared.range_id, spared.remove, spared.add, spared.reason) == (2, 1, 2, "balance")
    # Leading nothing, or everything it holds: the move stays as planned.
    assert sparing_leaders([move], RANGES, NODES, OperatorState(), {}) == [move]
    all_led = {1: frozenset({1, 2, 3, 4})}
    assert sparing_leaders([move], RANGES, NODES, OperatorState(), all_led) == [move]


def test_the_follower_taken_instead_is_none_moved_already_nor_one_a_drain_moves() -> None:
    first = Move(1, 2, 1, "balance")
    second = Move(3, 2, 1, "balance")
    led = {1: frozenset({1, 3})}
    draining = OperatorState(draining=frozenset({5}))
    ranges = [*RANGES[:3], RangeDescriptor(4, b"d", b"e", (1, 3, 6))]
    # Range 2 for the first; the second finds only range 4 (2 is taken, 3 and 1 are led).
    spared = sparing_leaders([first, second], ranges, NODES, OperatorState(), led)
    assert [m.range_id for m in spared] == [2, 4]
    # With node 5 draining, ranges 1-3 are the drain's: range 4 only, then nothing left.
    spared = sparing_leaders([first, second], ranges, NODES, draining, led)
    assert [m.range_id for m in spared] == [4, 3]
    # Another reason than balance (a missing replica): as planned.
    missing = Move(1, 2, None, "missing")
    assert sparing_leaders([missing], RANGES, NODES, OperatorState(), led) == [missing]
