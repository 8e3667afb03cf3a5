"""The rebalancer's choice of its next move (``kvstore.api.rebalancer.next_move``) and the
operator state it reads (``kvstore.operator_state``)."""

from __future__ import annotations

from cluster import NodeSpec, RangeDescriptor
from kvstore.api.rebalancer import next_move
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


def test_it_balances_onto_a_node_that_holds_nothing() -> None:
    move = next_move(RANGES, NODES, OperatorState(), replicas_per_dc=1)
    assert move is not None and move.reason == "balance"
    assert (move.remove, move.add) == (1, 2)


def test_it_never_moves_onto_a_draining_node() -> None:
    move = next_move(RANGES, NODES, OperatorState(draining=frozenset({2})), replicas_per_dc=1)
    assert move is not None and move.add not in (1, 2)  # dc1 is left as it is
    assert (
        next_move(RANGES, NODES, OperatorState(draining=frozenset({2, 4, 6})), replicas_per_dc=1)
        is None
    )


def test_it_stands_aside_while_a_drain_is_under_way() -> None:
    """A draining node that still holds a replica: the drain moves it, not the rebalancer."""
    assert (
        next_move(RANGES, NODES, OperatorState(draining=frozenset({1})), replicas_per_dc=1) is None
    )


def test_it_stands_aside_while_a_replica_is_on_a_node_gone_from_the_list() -> None:
    listed = [n for n in NODES if n.node_id != 5]
    assert next_move(RANGES, listed, OperatorState(), replicas_per_dc=1) is None


def test_it_fills_a_missing_replica_and_does_nothing_once_balanced() -> None:
    short = [RangeDescriptor(1, b"a", b"b", (1, 3))]
    move = next_move(short, NODES, OperatorState(), replicas_per_dc=1)
    assert move is not None and move.reason == "missing" and move.add in (5, 6)
    balanced = [
        RangeDescriptor(1, b"a", b"b", (1, 3, 5)),
        RangeDescriptor(2, b"b", b"c", (2, 4, 6)),
    ]
    assert next_move(balanced, NODES, OperatorState(), replicas_per_dc=1) is None


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
