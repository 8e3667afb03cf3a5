"""``kvstore shards``: a shard's leader, keys and load come from its replicas' own views,
since the node that describes the cluster knows them only for the shards it holds (with two
nodes per datacenter the table showed most shards with no leader and no keys)."""

from __future__ import annotations

from kvstore.cli_admin import _with_replica_stats
from kvstore.v1 import admin_pb2


def replica(  # noqa: PLR0917 - one row's fields, in the order the tests read them
    shard: int, role: str, applied: int, keys: int, leader: int, generation: int = 2
) -> admin_pb2.ShardReplicaStatus:
    return admin_pb2.ShardReplicaStatus(
        shard_id=shard,
        role=role,
        applied_slot=applied,
        keys=keys,
        size_bytes=keys * 10,
        ops_per_s=float(keys),
        leader_node_id=leader,
        generation=generation,
    )


def view(node: int, *rows: admin_pb2.ShardReplicaStatus) -> admin_pb2.NodeStatusResponse:
    return admin_pb2.NodeStatusResponse(node_id=node, shards=list(rows))


SHARD = admin_pb2.ShardInfo(shard_id=7, generation=2, replicas=[2, 4, 6])


def test_the_leaders_figures_and_name_fill_a_shard_the_describing_node_does_not_hold() -> None:
    views = [
        view(1, replica(3, "leader", 90, 5, 1)),  # another shard
        view(2, replica(7, "follower", 41, 300, 4)),
        view(4, replica(7, "leader", 40, 299, 4)),
        view(6, replica(7, "follower", 39, 298, 4, generation=1)),  # an older configuration
    ]
    merged = _with_replica_stats(SHARD, views)
    assert (merged.leader_node_id, merged.keys, merged.size_bytes) == (4, 299, 2990)
    assert SHARD.keys == 0  # the description itself is left as it was


def test_without_a_leader_the_most_applied_replica_counts_and_none_leaves_it_as_it_is() -> None:
    views = [view(2, replica(7, "follower", 41, 300, 0)), view(4, replica(7, "follower", 40, 1, 0))]
    merged = _with_replica_stats(SHARD, views)
    assert (merged.leader_node_id, merged.keys) == (0, 300)
    assert _with_replica_stats(SHARD, [view(1, replica(3, "leader", 9, 5, 1))]) == SHARD
