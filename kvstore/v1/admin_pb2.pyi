from kvstore.v1 import kv_pb2 as _kv_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NodeStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ShardReplicaStatus(_message.Message):
    __slots__ = ("shard_id", "start", "end", "role", "promised_ballot", "leader_node_id", "chosen_through", "applied_slot", "lease", "revision", "preferred_dc", "staleness_bound_ms", "generation", "keys", "size_bytes", "ops_per_s", "quiet")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    PROMISED_BALLOT_FIELD_NUMBER: _ClassVar[int]
    LEADER_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_THROUGH_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SLOT_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    PREFERRED_DC_FIELD_NUMBER: _ClassVar[int]
    STALENESS_BOUND_MS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    OPS_PER_S_FIELD_NUMBER: _ClassVar[int]
    QUIET_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    start: bytes
    end: bytes
    role: str
    promised_ballot: str
    leader_node_id: int
    chosen_through: int
    applied_slot: int
    lease: bool
    revision: int
    preferred_dc: str
    staleness_bound_ms: int
    generation: int
    keys: int
    size_bytes: int
    ops_per_s: float
    quiet: bool
    def __init__(self, shard_id: _Optional[int] = ..., start: _Optional[bytes] = ..., end: _Optional[bytes] = ..., role: _Optional[str] = ..., promised_ballot: _Optional[str] = ..., leader_node_id: _Optional[int] = ..., chosen_through: _Optional[int] = ..., applied_slot: _Optional[int] = ..., lease: _Optional[bool] = ..., revision: _Optional[int] = ..., preferred_dc: _Optional[str] = ..., staleness_bound_ms: _Optional[int] = ..., generation: _Optional[int] = ..., keys: _Optional[int] = ..., size_bytes: _Optional[int] = ..., ops_per_s: _Optional[float] = ..., quiet: _Optional[bool] = ...) -> None: ...

class PeerLink(_message.Message):
    __slots__ = ("node_id", "dc", "connected", "rtt_ms", "rtt_avg_ms")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    DC_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    RTT_MS_FIELD_NUMBER: _ClassVar[int]
    RTT_AVG_MS_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    dc: str
    connected: bool
    rtt_ms: float
    rtt_avg_ms: float
    def __init__(self, node_id: _Optional[int] = ..., dc: _Optional[str] = ..., connected: _Optional[bool] = ..., rtt_ms: _Optional[float] = ..., rtt_avg_ms: _Optional[float] = ...) -> None: ...

class NodeStatusResponse(_message.Message):
    __slots__ = ("node_id", "dc", "address", "shards", "cpu_seconds", "rss_bytes", "disk_bytes", "peers")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    DC_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    CPU_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    DISK_BYTES_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    dc: str
    address: str
    shards: _containers.RepeatedCompositeFieldContainer[ShardReplicaStatus]
    cpu_seconds: float
    rss_bytes: int
    disk_bytes: int
    peers: _containers.RepeatedCompositeFieldContainer[PeerLink]
    def __init__(self, node_id: _Optional[int] = ..., dc: _Optional[str] = ..., address: _Optional[str] = ..., shards: _Optional[_Iterable[_Union[ShardReplicaStatus, _Mapping]]] = ..., cpu_seconds: _Optional[float] = ..., rss_bytes: _Optional[int] = ..., disk_bytes: _Optional[int] = ..., peers: _Optional[_Iterable[_Union[PeerLink, _Mapping]]] = ...) -> None: ...

class TransferLeaderRequest(_message.Message):
    __slots__ = ("shard_id", "to_node_id")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    TO_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    to_node_id: int
    def __init__(self, shard_id: _Optional[int] = ..., to_node_id: _Optional[int] = ...) -> None: ...

class TransferLeaderResponse(_message.Message):
    __slots__ = ("started", "leader_node_id")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    LEADER_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    started: bool
    leader_node_id: int
    def __init__(self, started: _Optional[bool] = ..., leader_node_id: _Optional[int] = ...) -> None: ...

class DescribeClusterRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NodeInfo(_message.Message):
    __slots__ = ("node_id", "dc", "address")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    DC_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    dc: str
    address: str
    def __init__(self, node_id: _Optional[int] = ..., dc: _Optional[str] = ..., address: _Optional[str] = ...) -> None: ...

class ShardInfo(_message.Message):
    __slots__ = ("shard_id", "start", "end", "replicas", "leader_node_id", "preferred_dc", "generation", "keys", "size_bytes", "ops_per_s")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    LEADER_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    PREFERRED_DC_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    OPS_PER_S_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    start: bytes
    end: bytes
    replicas: _containers.RepeatedScalarFieldContainer[int]
    leader_node_id: int
    preferred_dc: str
    generation: int
    keys: int
    size_bytes: int
    ops_per_s: float
    def __init__(self, shard_id: _Optional[int] = ..., start: _Optional[bytes] = ..., end: _Optional[bytes] = ..., replicas: _Optional[_Iterable[int]] = ..., leader_node_id: _Optional[int] = ..., preferred_dc: _Optional[str] = ..., generation: _Optional[int] = ..., keys: _Optional[int] = ..., size_bytes: _Optional[int] = ..., ops_per_s: _Optional[float] = ...) -> None: ...

class DescribeClusterResponse(_message.Message):
    __slots__ = ("cluster", "nodes", "shards", "meta_directory", "removed_nodes")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    META_DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    REMOVED_NODES_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    nodes: _containers.RepeatedCompositeFieldContainer[NodeInfo]
    shards: _containers.RepeatedCompositeFieldContainer[ShardInfo]
    meta_directory: _containers.RepeatedCompositeFieldContainer[ShardInfo]
    removed_nodes: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, cluster: _Optional[str] = ..., nodes: _Optional[_Iterable[_Union[NodeInfo, _Mapping]]] = ..., shards: _Optional[_Iterable[_Union[ShardInfo, _Mapping]]] = ..., meta_directory: _Optional[_Iterable[_Union[ShardInfo, _Mapping]]] = ..., removed_nodes: _Optional[_Iterable[int]] = ...) -> None: ...

class SetPlacementRequest(_message.Message):
    __slots__ = ("shard_id", "leader_dc")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_DC_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    leader_dc: str
    def __init__(self, shard_id: _Optional[int] = ..., leader_dc: _Optional[str] = ...) -> None: ...

class SetPlacementResponse(_message.Message):
    __slots__ = ("preferred_dc", "leader_node_id")
    PREFERRED_DC_FIELD_NUMBER: _ClassVar[int]
    LEADER_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    preferred_dc: str
    leader_node_id: int
    def __init__(self, preferred_dc: _Optional[str] = ..., leader_node_id: _Optional[int] = ...) -> None: ...

class RecordRangesRequest(_message.Message):
    __slots__ = ("ranges",)
    RANGES_FIELD_NUMBER: _ClassVar[int]
    ranges: _containers.RepeatedCompositeFieldContainer[ShardInfo]
    def __init__(self, ranges: _Optional[_Iterable[_Union[ShardInfo, _Mapping]]] = ...) -> None: ...

class RecordRangesResponse(_message.Message):
    __slots__ = ("changed",)
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    changed: bool
    def __init__(self, changed: _Optional[bool] = ...) -> None: ...

class SplitRangeRequest(_message.Message):
    __slots__ = ("shard_id", "at", "new_shard_id")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    NEW_SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    at: bytes
    new_shard_id: int
    def __init__(self, shard_id: _Optional[int] = ..., at: _Optional[bytes] = ..., new_shard_id: _Optional[int] = ...) -> None: ...

class SplitRangeResponse(_message.Message):
    __slots__ = ("left", "right")
    LEFT_FIELD_NUMBER: _ClassVar[int]
    RIGHT_FIELD_NUMBER: _ClassVar[int]
    left: ShardInfo
    right: ShardInfo
    def __init__(self, left: _Optional[_Union[ShardInfo, _Mapping]] = ..., right: _Optional[_Union[ShardInfo, _Mapping]] = ...) -> None: ...

class MergeRangeRequest(_message.Message):
    __slots__ = ("shard_id", "freeze_shard_id", "right", "frozen_slot")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    FREEZE_SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    RIGHT_FIELD_NUMBER: _ClassVar[int]
    FROZEN_SLOT_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    freeze_shard_id: int
    right: ShardInfo
    frozen_slot: int
    def __init__(self, shard_id: _Optional[int] = ..., freeze_shard_id: _Optional[int] = ..., right: _Optional[_Union[ShardInfo, _Mapping]] = ..., frozen_slot: _Optional[int] = ...) -> None: ...

class MergeRangeResponse(_message.Message):
    __slots__ = ("merged", "frozen", "frozen_slot")
    MERGED_FIELD_NUMBER: _ClassVar[int]
    FROZEN_FIELD_NUMBER: _ClassVar[int]
    FROZEN_SLOT_FIELD_NUMBER: _ClassVar[int]
    merged: ShardInfo
    frozen: ShardInfo
    frozen_slot: int
    def __init__(self, merged: _Optional[_Union[ShardInfo, _Mapping]] = ..., frozen: _Optional[_Union[ShardInfo, _Mapping]] = ..., frozen_slot: _Optional[int] = ...) -> None: ...

class ChangeReplicasRequest(_message.Message):
    __slots__ = ("shard_id", "add", "remove", "new_shard_id", "replicas")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    ADD_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FIELD_NUMBER: _ClassVar[int]
    NEW_SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    add: _containers.RepeatedScalarFieldContainer[int]
    remove: _containers.RepeatedScalarFieldContainer[int]
    new_shard_id: int
    replicas: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, shard_id: _Optional[int] = ..., add: _Optional[_Iterable[int]] = ..., remove: _Optional[_Iterable[int]] = ..., new_shard_id: _Optional[int] = ..., replicas: _Optional[_Iterable[int]] = ...) -> None: ...

class ChangeReplicasResponse(_message.Message):
    __slots__ = ("ended", "successor")
    ENDED_FIELD_NUMBER: _ClassVar[int]
    SUCCESSOR_FIELD_NUMBER: _ClassVar[int]
    ended: ShardInfo
    successor: ShardInfo
    def __init__(self, ended: _Optional[_Union[ShardInfo, _Mapping]] = ..., successor: _Optional[_Union[ShardInfo, _Mapping]] = ...) -> None: ...

class AllocateShardIdRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AllocateShardIdResponse(_message.Message):
    __slots__ = ("shard_id",)
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    def __init__(self, shard_id: _Optional[int] = ...) -> None: ...

class JoinClusterRequest(_message.Message):
    __slots__ = ("dc", "address")
    DC_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    dc: str
    address: str
    def __init__(self, dc: _Optional[str] = ..., address: _Optional[str] = ...) -> None: ...

class JoinClusterResponse(_message.Message):
    __slots__ = ("node_id", "config", "nodes")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    config: str
    nodes: _containers.RepeatedCompositeFieldContainer[NodeInfo]
    def __init__(self, node_id: _Optional[int] = ..., config: _Optional[str] = ..., nodes: _Optional[_Iterable[_Union[NodeInfo, _Mapping]]] = ...) -> None: ...

class AdmitNodesRequest(_message.Message):
    __slots__ = ("nodes", "removed")
    NODES_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeInfo]
    removed: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeInfo, _Mapping]]] = ..., removed: _Optional[_Iterable[int]] = ...) -> None: ...

class RemoveNodeRequest(_message.Message):
    __slots__ = ("node_id", "check_only")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CHECK_ONLY_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    check_only: bool
    def __init__(self, node_id: _Optional[int] = ..., check_only: _Optional[bool] = ...) -> None: ...

class RemoveNodeResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AdmitNodesResponse(_message.Message):
    __slots__ = ("admitted",)
    ADMITTED_FIELD_NUMBER: _ClassVar[int]
    admitted: int
    def __init__(self, admitted: _Optional[int] = ...) -> None: ...

class DetachLeaseRequest(_message.Message):
    __slots__ = ("shard_id", "lease_id")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    lease_id: int
    def __init__(self, shard_id: _Optional[int] = ..., lease_id: _Optional[int] = ...) -> None: ...

class DetachLeaseResponse(_message.Message):
    __slots__ = ("deleted", "revision")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    revision: int
    def __init__(self, deleted: _Optional[int] = ..., revision: _Optional[int] = ...) -> None: ...

class SetNodeStateRequest(_message.Message):
    __slots__ = ("node_id", "draining")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    draining: bool
    def __init__(self, node_id: _Optional[int] = ..., draining: _Optional[bool] = ...) -> None: ...

class SetNodeStateResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SetRebalanceRequest(_message.Message):
    __slots__ = ("enabled",)
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    def __init__(self, enabled: _Optional[bool] = ...) -> None: ...

class SetRebalanceResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetOperatorStateRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetOperatorStateResponse(_message.Message):
    __slots__ = ("draining", "rebalance")
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    REBALANCE_FIELD_NUMBER: _ClassVar[int]
    draining: _containers.RepeatedScalarFieldContainer[int]
    rebalance: bool
    def __init__(self, draining: _Optional[_Iterable[int]] = ..., rebalance: _Optional[bool] = ...) -> None: ...

class ApplyOperatorStateRequest(_message.Message):
    __slots__ = ("key", "command", "routed_by")
    KEY_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ROUTED_BY_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    command: bytes
    routed_by: _kv_pb2.RangeVersion
    def __init__(self, key: _Optional[bytes] = ..., command: _Optional[bytes] = ..., routed_by: _Optional[_Union[_kv_pb2.RangeVersion, _Mapping]] = ...) -> None: ...

class ApplyOperatorStateResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: bytes
    def __init__(self, result: _Optional[bytes] = ...) -> None: ...
