from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Consistency(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONSISTENCY_LINEARIZABLE: _ClassVar[Consistency]
    CONSISTENCY_STALE: _ClassVar[Consistency]
CONSISTENCY_LINEARIZABLE: Consistency
CONSISTENCY_STALE: Consistency

class KeyValue(_message.Message):
    __slots__ = ("key", "value", "create_revision", "mod_revision", "version")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CREATE_REVISION_FIELD_NUMBER: _ClassVar[int]
    MOD_REVISION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    def __init__(self, key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., create_revision: _Optional[int] = ..., mod_revision: _Optional[int] = ..., version: _Optional[int] = ...) -> None: ...

class RequestId(_message.Message):
    __slots__ = ("client_id", "seq")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    client_id: int
    seq: int
    def __init__(self, client_id: _Optional[int] = ..., seq: _Optional[int] = ...) -> None: ...

class RangeVersion(_message.Message):
    __slots__ = ("shard_id", "generation")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    generation: int
    def __init__(self, shard_id: _Optional[int] = ..., generation: _Optional[int] = ...) -> None: ...

class RangeInfo(_message.Message):
    __slots__ = ("shard_id", "start", "end", "replicas", "generation", "leader_node_id")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    LEADER_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    start: bytes
    end: bytes
    replicas: _containers.RepeatedScalarFieldContainer[int]
    generation: int
    leader_node_id: int
    def __init__(self, shard_id: _Optional[int] = ..., start: _Optional[bytes] = ..., end: _Optional[bytes] = ..., replicas: _Optional[_Iterable[int]] = ..., generation: _Optional[int] = ..., leader_node_id: _Optional[int] = ...) -> None: ...

class ResponseHeader(_message.Message):
    __slots__ = ("shard_id", "revision", "leader_node_id", "served_by_node_id", "served_by_dc", "applied_slot", "staleness_bound_ms", "generation")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    LEADER_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SERVED_BY_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SERVED_BY_DC_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SLOT_FIELD_NUMBER: _ClassVar[int]
    STALENESS_BOUND_MS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    revision: int
    leader_node_id: int
    served_by_node_id: int
    served_by_dc: str
    applied_slot: int
    staleness_bound_ms: int
    generation: int
    def __init__(self, shard_id: _Optional[int] = ..., revision: _Optional[int] = ..., leader_node_id: _Optional[int] = ..., served_by_node_id: _Optional[int] = ..., served_by_dc: _Optional[str] = ..., applied_slot: _Optional[int] = ..., staleness_bound_ms: _Optional[int] = ..., generation: _Optional[int] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("key", "consistency", "max_staleness_ms", "routed_by", "revision")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    MAX_STALENESS_MS_FIELD_NUMBER: _ClassVar[int]
    ROUTED_BY_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    consistency: Consistency
    max_staleness_ms: int
    routed_by: RangeVersion
    revision: int
    def __init__(self, key: _Optional[bytes] = ..., consistency: _Optional[_Union[Consistency, str]] = ..., max_staleness_ms: _Optional[int] = ..., routed_by: _Optional[_Union[RangeVersion, _Mapping]] = ..., revision: _Optional[int] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("found", "kv", "header")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    KV_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    found: bool
    kv: KeyValue
    header: ResponseHeader
    def __init__(self, found: _Optional[bool] = ..., kv: _Optional[_Union[KeyValue, _Mapping]] = ..., header: _Optional[_Union[ResponseHeader, _Mapping]] = ...) -> None: ...

class PutRequest(_message.Message):
    __slots__ = ("key", "value", "request_id", "prev_kv", "routed_by", "lease")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PREV_KV_FIELD_NUMBER: _ClassVar[int]
    ROUTED_BY_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    value: bytes
    request_id: RequestId
    prev_kv: bool
    routed_by: RangeVersion
    lease: int
    def __init__(self, key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., request_id: _Optional[_Union[RequestId, _Mapping]] = ..., prev_kv: _Optional[bool] = ..., routed_by: _Optional[_Union[RangeVersion, _Mapping]] = ..., lease: _Optional[int] = ...) -> None: ...

class PutResponse(_message.Message):
    __slots__ = ("header", "prev_kv")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PREV_KV_FIELD_NUMBER: _ClassVar[int]
    header: ResponseHeader
    prev_kv: KeyValue
    def __init__(self, header: _Optional[_Union[ResponseHeader, _Mapping]] = ..., prev_kv: _Optional[_Union[KeyValue, _Mapping]] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("key", "request_id", "prev_kv", "routed_by")
    KEY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PREV_KV_FIELD_NUMBER: _ClassVar[int]
    ROUTED_BY_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    request_id: RequestId
    prev_kv: bool
    routed_by: RangeVersion
    def __init__(self, key: _Optional[bytes] = ..., request_id: _Optional[_Union[RequestId, _Mapping]] = ..., prev_kv: _Optional[bool] = ..., routed_by: _Optional[_Union[RangeVersion, _Mapping]] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("deleted", "header", "prev_kv")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PREV_KV_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    header: ResponseHeader
    prev_kv: KeyValue
    def __init__(self, deleted: _Optional[bool] = ..., header: _Optional[_Union[ResponseHeader, _Mapping]] = ..., prev_kv: _Optional[_Union[KeyValue, _Mapping]] = ...) -> None: ...

class ScanRequest(_message.Message):
    __slots__ = ("start", "end", "limit", "consistency", "max_staleness_ms", "revision")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    MAX_STALENESS_MS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    start: bytes
    end: bytes
    limit: int
    consistency: Consistency
    max_staleness_ms: int
    revision: int
    def __init__(self, start: _Optional[bytes] = ..., end: _Optional[bytes] = ..., limit: _Optional[int] = ..., consistency: _Optional[_Union[Consistency, str]] = ..., max_staleness_ms: _Optional[int] = ..., revision: _Optional[int] = ...) -> None: ...

class ScanResponse(_message.Message):
    __slots__ = ("kvs", "more", "header")
    KVS_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    kvs: _containers.RepeatedCompositeFieldContainer[KeyValue]
    more: bool
    header: ResponseHeader
    def __init__(self, kvs: _Optional[_Iterable[_Union[KeyValue, _Mapping]]] = ..., more: _Optional[bool] = ..., header: _Optional[_Union[ResponseHeader, _Mapping]] = ...) -> None: ...

class Compare(_message.Message):
    __slots__ = ("key", "target", "op", "value", "number")
    class Target(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        TARGET_VALUE: _ClassVar[Compare.Target]
        TARGET_VERSION: _ClassVar[Compare.Target]
        TARGET_CREATE_REVISION: _ClassVar[Compare.Target]
        TARGET_MOD_REVISION: _ClassVar[Compare.Target]
    TARGET_VALUE: Compare.Target
    TARGET_VERSION: Compare.Target
    TARGET_CREATE_REVISION: Compare.Target
    TARGET_MOD_REVISION: Compare.Target
    class Op(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OP_EQUAL: _ClassVar[Compare.Op]
        OP_NOT_EQUAL: _ClassVar[Compare.Op]
        OP_LESS: _ClassVar[Compare.Op]
        OP_GREATER: _ClassVar[Compare.Op]
    OP_EQUAL: Compare.Op
    OP_NOT_EQUAL: Compare.Op
    OP_LESS: Compare.Op
    OP_GREATER: Compare.Op
    KEY_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    target: Compare.Target
    op: Compare.Op
    value: bytes
    number: int
    def __init__(self, key: _Optional[bytes] = ..., target: _Optional[_Union[Compare.Target, str]] = ..., op: _Optional[_Union[Compare.Op, str]] = ..., value: _Optional[bytes] = ..., number: _Optional[int] = ...) -> None: ...

class RequestOp(_message.Message):
    __slots__ = ("get", "put", "delete")
    GET_FIELD_NUMBER: _ClassVar[int]
    PUT_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    get: GetRequest
    put: PutRequest
    delete: DeleteRequest
    def __init__(self, get: _Optional[_Union[GetRequest, _Mapping]] = ..., put: _Optional[_Union[PutRequest, _Mapping]] = ..., delete: _Optional[_Union[DeleteRequest, _Mapping]] = ...) -> None: ...

class ResponseOp(_message.Message):
    __slots__ = ("get", "put", "delete")
    GET_FIELD_NUMBER: _ClassVar[int]
    PUT_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    get: GetResponse
    put: PutResponse
    delete: DeleteResponse
    def __init__(self, get: _Optional[_Union[GetResponse, _Mapping]] = ..., put: _Optional[_Union[PutResponse, _Mapping]] = ..., delete: _Optional[_Union[DeleteResponse, _Mapping]] = ...) -> None: ...

class TxnRequest(_message.Message):
    __slots__ = ("compare", "success", "failure", "request_id", "routed_by")
    COMPARE_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ROUTED_BY_FIELD_NUMBER: _ClassVar[int]
    compare: _containers.RepeatedCompositeFieldContainer[Compare]
    success: _containers.RepeatedCompositeFieldContainer[RequestOp]
    failure: _containers.RepeatedCompositeFieldContainer[RequestOp]
    request_id: RequestId
    routed_by: RangeVersion
    def __init__(self, compare: _Optional[_Iterable[_Union[Compare, _Mapping]]] = ..., success: _Optional[_Iterable[_Union[RequestOp, _Mapping]]] = ..., failure: _Optional[_Iterable[_Union[RequestOp, _Mapping]]] = ..., request_id: _Optional[_Union[RequestId, _Mapping]] = ..., routed_by: _Optional[_Union[RangeVersion, _Mapping]] = ...) -> None: ...

class TxnResponse(_message.Message):
    __slots__ = ("succeeded", "responses", "header")
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    succeeded: bool
    responses: _containers.RepeatedCompositeFieldContainer[ResponseOp]
    header: ResponseHeader
    def __init__(self, succeeded: _Optional[bool] = ..., responses: _Optional[_Iterable[_Union[ResponseOp, _Mapping]]] = ..., header: _Optional[_Union[ResponseHeader, _Mapping]] = ...) -> None: ...

class BatchItem(_message.Message):
    __slots__ = ("get", "put", "delete", "txn", "timeout_ms")
    GET_FIELD_NUMBER: _ClassVar[int]
    PUT_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    TXN_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    get: GetRequest
    put: PutRequest
    delete: DeleteRequest
    txn: TxnRequest
    timeout_ms: int
    def __init__(self, get: _Optional[_Union[GetRequest, _Mapping]] = ..., put: _Optional[_Union[PutRequest, _Mapping]] = ..., delete: _Optional[_Union[DeleteRequest, _Mapping]] = ..., txn: _Optional[_Union[TxnRequest, _Mapping]] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class ItemStatus(_message.Message):
    __slots__ = ("code", "message", "range", "compacted_revision")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    COMPACTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    range: RangeInfo
    compacted_revision: int
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., range: _Optional[_Union[RangeInfo, _Mapping]] = ..., compacted_revision: _Optional[int] = ...) -> None: ...

class BatchResult(_message.Message):
    __slots__ = ("get", "put", "delete", "txn", "error")
    GET_FIELD_NUMBER: _ClassVar[int]
    PUT_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    TXN_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    get: GetResponse
    put: PutResponse
    delete: DeleteResponse
    txn: TxnResponse
    error: ItemStatus
    def __init__(self, get: _Optional[_Union[GetResponse, _Mapping]] = ..., put: _Optional[_Union[PutResponse, _Mapping]] = ..., delete: _Optional[_Union[DeleteResponse, _Mapping]] = ..., txn: _Optional[_Union[TxnResponse, _Mapping]] = ..., error: _Optional[_Union[ItemStatus, _Mapping]] = ...) -> None: ...

class BatchRequest(_message.Message):
    __slots__ = ("items", "id", "partial_answers")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_ANSWERS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[BatchItem]
    id: int
    partial_answers: bool
    def __init__(self, items: _Optional[_Iterable[_Union[BatchItem, _Mapping]]] = ..., id: _Optional[int] = ..., partial_answers: _Optional[bool] = ...) -> None: ...

class BatchResponse(_message.Message):
    __slots__ = ("results", "id", "item_indexes")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_INDEXES_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[BatchResult]
    id: int
    item_indexes: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, results: _Optional[_Iterable[_Union[BatchResult, _Mapping]]] = ..., id: _Optional[int] = ..., item_indexes: _Optional[_Iterable[int]] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("create", "cancel")
    CREATE_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    create: WatchCreateRequest
    cancel: WatchCancelRequest
    def __init__(self, create: _Optional[_Union[WatchCreateRequest, _Mapping]] = ..., cancel: _Optional[_Union[WatchCancelRequest, _Mapping]] = ...) -> None: ...

class WatchCreateRequest(_message.Message):
    __slots__ = ("key", "range_end", "start_revision", "start_token", "prev_kv", "watch_id")
    KEY_FIELD_NUMBER: _ClassVar[int]
    RANGE_END_FIELD_NUMBER: _ClassVar[int]
    START_REVISION_FIELD_NUMBER: _ClassVar[int]
    START_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PREV_KV_FIELD_NUMBER: _ClassVar[int]
    WATCH_ID_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    range_end: bytes
    start_revision: int
    start_token: str
    prev_kv: bool
    watch_id: int
    def __init__(self, key: _Optional[bytes] = ..., range_end: _Optional[bytes] = ..., start_revision: _Optional[int] = ..., start_token: _Optional[str] = ..., prev_kv: _Optional[bool] = ..., watch_id: _Optional[int] = ...) -> None: ...

class WatchCancelRequest(_message.Message):
    __slots__ = ("watch_id",)
    WATCH_ID_FIELD_NUMBER: _ClassVar[int]
    watch_id: int
    def __init__(self, watch_id: _Optional[int] = ...) -> None: ...

class WatchEvent(_message.Message):
    __slots__ = ("type", "kv", "prev_kv", "shard_id", "token")
    class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        PUT: _ClassVar[WatchEvent.EventType]
        DELETE: _ClassVar[WatchEvent.EventType]
    PUT: WatchEvent.EventType
    DELETE: WatchEvent.EventType
    TYPE_FIELD_NUMBER: _ClassVar[int]
    KV_FIELD_NUMBER: _ClassVar[int]
    PREV_KV_FIELD_NUMBER: _ClassVar[int]
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    type: WatchEvent.EventType
    kv: KeyValue
    prev_kv: KeyValue
    shard_id: int
    token: str
    def __init__(self, type: _Optional[_Union[WatchEvent.EventType, str]] = ..., kv: _Optional[_Union[KeyValue, _Mapping]] = ..., prev_kv: _Optional[_Union[KeyValue, _Mapping]] = ..., shard_id: _Optional[int] = ..., token: _Optional[str] = ...) -> None: ...

class WatchResponse(_message.Message):
    __slots__ = ("watch_id", "created", "canceled", "cancel_reason", "compact_revision", "events", "token", "header")
    WATCH_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    CANCELED_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REASON_FIELD_NUMBER: _ClassVar[int]
    COMPACT_REVISION_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    watch_id: int
    created: bool
    canceled: bool
    cancel_reason: str
    compact_revision: int
    events: _containers.RepeatedCompositeFieldContainer[WatchEvent]
    token: str
    header: ResponseHeader
    def __init__(self, watch_id: _Optional[int] = ..., created: _Optional[bool] = ..., canceled: _Optional[bool] = ..., cancel_reason: _Optional[str] = ..., compact_revision: _Optional[int] = ..., events: _Optional[_Iterable[_Union[WatchEvent, _Mapping]]] = ..., token: _Optional[str] = ..., header: _Optional[_Union[ResponseHeader, _Mapping]] = ...) -> None: ...

class LeaseGrantRequest(_message.Message):
    __slots__ = ("ttl_ms", "id")
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    ttl_ms: int
    id: int
    def __init__(self, ttl_ms: _Optional[int] = ..., id: _Optional[int] = ...) -> None: ...

class LeaseGrantResponse(_message.Message):
    __slots__ = ("id", "ttl_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    id: int
    ttl_ms: int
    def __init__(self, id: _Optional[int] = ..., ttl_ms: _Optional[int] = ...) -> None: ...

class LeaseRevokeRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    def __init__(self, id: _Optional[int] = ...) -> None: ...

class LeaseRevokeResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LeaseKeepAliveRequest(_message.Message):
    __slots__ = ("id", "ids")
    ID_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    id: int
    ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, id: _Optional[int] = ..., ids: _Optional[_Iterable[int]] = ...) -> None: ...

class LeaseKeepAliveResponse(_message.Message):
    __slots__ = ("id", "ttl_ms", "ttls_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    TTLS_MS_FIELD_NUMBER: _ClassVar[int]
    id: int
    ttl_ms: int
    ttls_ms: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, id: _Optional[int] = ..., ttl_ms: _Optional[int] = ..., ttls_ms: _Optional[_Iterable[int]] = ...) -> None: ...

class LeaseTimeToLiveRequest(_message.Message):
    __slots__ = ("id", "ended_too")
    ID_FIELD_NUMBER: _ClassVar[int]
    ENDED_TOO_FIELD_NUMBER: _ClassVar[int]
    id: int
    ended_too: bool
    def __init__(self, id: _Optional[int] = ..., ended_too: _Optional[bool] = ...) -> None: ...

class LeaseTimeToLiveResponse(_message.Message):
    __slots__ = ("id", "ttl_ms", "remaining_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    REMAINING_MS_FIELD_NUMBER: _ClassVar[int]
    id: int
    ttl_ms: int
    remaining_ms: int
    def __init__(self, id: _Optional[int] = ..., ttl_ms: _Optional[int] = ..., remaining_ms: _Optional[int] = ...) -> None: ...

class LeaseListRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LeaseListResponse(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, ids: _Optional[_Iterable[int]] = ...) -> None: ...
