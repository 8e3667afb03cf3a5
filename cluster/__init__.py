"""Many Paxos groups on many nodes in many datacenters. Sans-IO, like ``paxos``.

Key spans, the validated cluster configuration, range descriptors (what a group holds) and
the range cache that routes a key by them, and leader placement.
"""

from cluster.config import (
    ClusterConfig,
    ClusterConfigError,
    History,
    Limits,
    NodeSpec,
    Sharding,
    ShardSpec,
    parse_cluster_config,
)
from cluster.keys import END_OF_KEYSPACE, KeySpan
from cluster.range_map import RangeMap
from cluster.ranges import (
    META_RANGE_ID,
    RangeDescriptor,
    hosted_layout,
    initial_layout,
    meta_descriptor,
)

__all__ = [
    "END_OF_KEYSPACE",
    "META_RANGE_ID",
    "ClusterConfig",
    "ClusterConfigError",
    "History",
    "KeySpan",
    "Limits",
    "NodeSpec",
    "RangeDescriptor",
    "RangeMap",
    "ShardSpec",
    "Sharding",
    "hosted_layout",
    "initial_layout",
    "meta_descriptor",
    "parse_cluster_config",
]
