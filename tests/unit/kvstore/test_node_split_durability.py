"""A new shard's base state is made by the split, on each replica that applies it from the
log. A replica of the parent that compacted the split away could only hand a lagging peer a
snapshot of the parent without that state; if it then lost its disk, the new shard's base
was gone (sim seed 1715). So the parent's log keeps a split until the new shard has chosen a
slot past its base, which only replicas holding the base accept (``paxos.Replica``)."""

from __future__ import annotations

from cluster import ClusterConfig, KeySpan, NodeSpec, Sharding, ShardSpec
from kvstore.model import Put, RequestId, Split
from tests.unit.kvstore.test_node_quiescence import NODES, Trio, until

NEW_SHARD = 7


def one_shard() -> ClusterConfig:
    return ClusterConfig(
        name="t",
        tick_ms=10,
        datacenters=("d1", "d2", "d3"),
        nodes=tuple(NodeSpec(n, f"d{n}", f"n:{n}") for n in NODES),
        shards=(ShardSpec(1, KeySpan(b"", b""), NODES, "d1"),),
        sharding=Sharding(split_size_mb=0),
    )


def write(trio: Trio, leader: int, count: int, first: int) -> None:
    for i in range(first, first + count):
        trio.nodes[leader].submit(1, Put(RequestId(9, i), b"a%d" % i, b"v"), i)
        trio.settle()


def test_the_parent_keeps_a_split_in_its_log_until_the_new_shard_chose_past_its_base() -> None:
    trio = Trio(one_shard(), compact_every_slots=2)
    until(trio, lambda: trio.leader(1) is not None)
    leader = trio.leader(1)
    assert leader is not None
    trio.cut.add(NEW_SHARD)  # the new shard's replicas cannot reach each other
    trio.nodes[leader].submit(1, Split(RequestId(0, 0), b"m", NEW_SHARD), 0)
    trio.settle()
    assert all(node.hosts(NEW_SHARD) for node in trio.nodes.values())
    split_slot = trio.nodes[leader].applied_slot(1)
    write(trio, leader, 10, first=1)
    trio.tick(50)
    for node in trio.nodes.values():
        assert node.replica(NEW_SHARD).chosen_through == 1  # nothing past the base
        assert node.replica(1).snapshot_slot < split_slot  # so the split stays in the log
    trio.cut.clear()
    until(trio, lambda: trio.leader(NEW_SHARD) is not None)
    until(trio, lambda: all(n.replica(NEW_SHARD).chosen_through > 1 for n in trio.nodes.values()))
    write(trio, leader, 4, first=11)
    for node in trio.nodes.values():
        assert node.replica(1).snapshot_slot > split_slot  # compacted as usual again
