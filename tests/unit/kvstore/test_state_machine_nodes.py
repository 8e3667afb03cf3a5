"""The meta range's node table: a joining node gets an id no node has had (at least the
floor its proposer saw), a join retried gets its id again, an address is one node's."""

from __future__ import annotations

from kvstore.model import AddNode, Invalid, MemoryStore, NodeAdded, RequestId, decode_command
from kvstore.model import encode_command as encoded
from tests.unit.kvstore.test_state_machine_ranges import FIRST, META, apply, machine

NO_ID = RequestId(0, 0)


def test_nodes_get_ids_once_each_from_the_floor_up() -> None:
    store = MemoryStore()
    meta = machine(store, META)
    assert apply(meta, AddNode(NO_ID, 7, "dc1", "h:1")) == [NodeAdded(7, new=True)]
    # A floor below the counter (a proposer with an old list) does not hand out 7 again.
    assert apply(meta, AddNode(NO_ID, 4, "dc2", "h:2")) == [NodeAdded(8, new=True)]
    assert apply(meta, AddNode(NO_ID, 20, "dc3", "h:3")) == [NodeAdded(20, new=True)]
    # The table is state: a restarted machine knows it, and goes on from it.
    restarted = machine(store, META)
    assert restarted.joined_nodes() == [(7, "dc1", "h:1"), (8, "dc2", "h:2"), (20, "dc3", "h:3")]
    assert apply(restarted, AddNode(NO_ID, 4, "dc1", "h:4")) == [NodeAdded(21, new=True)]


def test_a_join_retried_gets_its_id_again_and_an_address_is_one_nodes() -> None:
    meta = machine(MemoryStore(), META)
    apply(meta, AddNode(NO_ID, 7, "dc1", "h:1"))
    assert apply(meta, AddNode(NO_ID, 9, "dc1", "h:1")) == [NodeAdded(7, new=False)]
    (refused,) = apply(meta, AddNode(NO_ID, 9, "dc2", "h:1"))
    assert isinstance(refused, Invalid) and "node 7" in refused.reason
    assert meta.joined_nodes() == [(7, "dc1", "h:1")]


def test_only_the_meta_range_keeps_nodes() -> None:
    (refused,) = apply(machine(MemoryStore(), FIRST), AddNode(NO_ID, 7, "dc1", "h:1"))
    assert isinstance(refused, Invalid)


def test_add_node_round_trips_through_the_codec() -> None:
    cmd = AddNode(RequestId(0, 0), 7, "dc-ü", "[::1]:7000")
    assert decode_command(encoded(cmd)) == cmd
