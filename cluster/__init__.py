"""Many Paxos groups on many nodes in many datacenters. Sans-IO, like ``paxos``.

So far: key spans, the validated cluster configuration, and the shard lookup. Placement,
envelopes and the per-node store of groups come with the rest of the cluster issue.
"""

from cluster.config import (
    ClusterConfig,
    ClusterConfigError,
    Limits,
    NodeSpec,
    ShardSpec,
    parse_cluster_config,
)
from cluster.keys import END_OF_KEYSPACE, KeySpan
from cluster.range_map import RangeMap

__all__ = [
    "END_OF_KEYSPACE",
    "ClusterConfig",
    "ClusterConfigError",
    "KeySpan",
    "Limits",
    "NodeSpec",
    "RangeMap",
    "ShardSpec",
    "parse_cluster_config",
]
