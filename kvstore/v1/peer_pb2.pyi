from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Ballot(_message.Message):
    __slots__ = ("round", "node_id")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    round: int
    node_id: int
    def __init__(self, round: _Optional[int] = ..., node_id: _Optional[int] = ...) -> None: ...

class SlotValue(_message.Message):
    __slots__ = ("commands",)
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    commands: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, commands: _Optional[_Iterable[bytes]] = ...) -> None: ...

class LogEntry(_message.Message):
    __slots__ = ("slot", "ballot", "value")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    BALLOT_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    slot: int
    ballot: Ballot
    value: SlotValue
    def __init__(self, slot: _Optional[int] = ..., ballot: _Optional[_Union[Ballot, _Mapping]] = ..., value: _Optional[_Union[SlotValue, _Mapping]] = ...) -> None: ...

class Proposal(_message.Message):
    __slots__ = ("slot", "value")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    slot: int
    value: SlotValue
    def __init__(self, slot: _Optional[int] = ..., value: _Optional[_Union[SlotValue, _Mapping]] = ...) -> None: ...

class Prepare(_message.Message):
    __slots__ = ("ballot", "from_slot", "transfer_of")
    BALLOT_FIELD_NUMBER: _ClassVar[int]
    FROM_SLOT_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_OF_FIELD_NUMBER: _ClassVar[int]
    ballot: Ballot
    from_slot: int
    transfer_of: Ballot
    def __init__(self, ballot: _Optional[_Union[Ballot, _Mapping]] = ..., from_slot: _Optional[int] = ..., transfer_of: _Optional[_Union[Ballot, _Mapping]] = ...) -> None: ...

class Promise(_message.Message):
    __slots__ = ("ballot", "entries", "chosen_through")
    BALLOT_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_THROUGH_FIELD_NUMBER: _ClassVar[int]
    ballot: Ballot
    entries: _containers.RepeatedCompositeFieldContainer[LogEntry]
    chosen_through: int
    def __init__(self, ballot: _Optional[_Union[Ballot, _Mapping]] = ..., entries: _Optional[_Iterable[_Union[LogEntry, _Mapping]]] = ..., chosen_through: _Optional[int] = ...) -> None: ...

class Accept(_message.Message):
    __slots__ = ("ballot", "proposals", "commit")
    BALLOT_FIELD_NUMBER: _ClassVar[int]
    PROPOSALS_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    ballot: Ballot
    proposals: _containers.RepeatedCompositeFieldContainer[Proposal]
    commit: int
    def __init__(self, ballot: _Optional[_Union[Ballot, _Mapping]] = ..., proposals: _Optional[_Iterable[_Union[Proposal, _Mapping]]] = ..., commit: _Optional[int] = ...) -> None: ...

class Accepted(_message.Message):
    __slots__ = ("ballot", "slots", "chosen_through")
    BALLOT_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_THROUGH_FIELD_NUMBER: _ClassVar[int]
    ballot: Ballot
    slots: _containers.RepeatedScalarFieldContainer[int]
    chosen_through: int
    def __init__(self, ballot: _Optional[_Union[Ballot, _Mapping]] = ..., slots: _Optional[_Iterable[int]] = ..., chosen_through: _Optional[int] = ...) -> None: ...

class Reject(_message.Message):
    __slots__ = ("ballot", "promised", "chosen_through")
    BALLOT_FIELD_NUMBER: _ClassVar[int]
    PROMISED_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_THROUGH_FIELD_NUMBER: _ClassVar[int]
    ballot: Ballot
    promised: Ballot
    chosen_through: int
    def __init__(self, ballot: _Optional[_Union[Ballot, _Mapping]] = ..., promised: _Optional[_Union[Ballot, _Mapping]] = ..., chosen_through: _Optional[int] = ...) -> None: ...

class Stamp(_message.Message):
    __slots__ = ("incarnation", "tick")
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    TICK_FIELD_NUMBER: _ClassVar[int]
    incarnation: int
    tick: int
    def __init__(self, incarnation: _Optional[int] = ..., tick: _Optional[int] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("ballot", "commit", "sent_tick", "round", "echo", "echo_through", "barrier", "quiesce")
    BALLOT_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    SENT_TICK_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    ECHO_FIELD_NUMBER: _ClassVar[int]
    ECHO_THROUGH_FIELD_NUMBER: _ClassVar[int]
    BARRIER_FIELD_NUMBER: _ClassVar[int]
    QUIESCE_FIELD_NUMBER: _ClassVar[int]
    ballot: Ballot
    commit: int
    sent_tick: int
    round: int
    echo: Stamp
    echo_through: int
    barrier: int
    quiesce: bool
    def __init__(self, ballot: _Optional[_Union[Ballot, _Mapping]] = ..., commit: _Optional[int] = ..., sent_tick: _Optional[int] = ..., round: _Optional[int] = ..., echo: _Optional[_Union[Stamp, _Mapping]] = ..., echo_through: _Optional[int] = ..., barrier: _Optional[int] = ..., quiesce: _Optional[bool] = ...) -> None: ...

class HeartbeatAck(_message.Message):
    __slots__ = ("ballot", "sent_tick", "round", "chosen_through", "stamp", "quiesced")
    BALLOT_FIELD_NUMBER: _ClassVar[int]
    SENT_TICK_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_THROUGH_FIELD_NUMBER: _ClassVar[int]
    STAMP_FIELD_NUMBER: _ClassVar[int]
    QUIESCED_FIELD_NUMBER: _ClassVar[int]
    ballot: Ballot
    sent_tick: int
    round: int
    chosen_through: int
    stamp: Stamp
    quiesced: bool
    def __init__(self, ballot: _Optional[_Union[Ballot, _Mapping]] = ..., sent_tick: _Optional[int] = ..., round: _Optional[int] = ..., chosen_through: _Optional[int] = ..., stamp: _Optional[_Union[Stamp, _Mapping]] = ..., quiesced: _Optional[bool] = ...) -> None: ...

class CatchUpRequest(_message.Message):
    __slots__ = ("from_slot",)
    FROM_SLOT_FIELD_NUMBER: _ClassVar[int]
    from_slot: int
    def __init__(self, from_slot: _Optional[int] = ...) -> None: ...

class CatchUp(_message.Message):
    __slots__ = ("first_slot", "values", "chosen_through")
    FIRST_SLOT_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_THROUGH_FIELD_NUMBER: _ClassVar[int]
    first_slot: int
    values: _containers.RepeatedCompositeFieldContainer[SlotValue]
    chosen_through: int
    def __init__(self, first_slot: _Optional[int] = ..., values: _Optional[_Iterable[_Union[SlotValue, _Mapping]]] = ..., chosen_through: _Optional[int] = ...) -> None: ...

class InstallSnapshot(_message.Message):
    __slots__ = ("slot", "data")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    slot: int
    data: bytes
    def __init__(self, slot: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class TimeoutNow(_message.Message):
    __slots__ = ("ballot",)
    BALLOT_FIELD_NUMBER: _ClassVar[int]
    ballot: Ballot
    def __init__(self, ballot: _Optional[_Union[Ballot, _Mapping]] = ...) -> None: ...

class RejoinQuery(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RejoinInfo(_message.Message):
    __slots__ = ("promised", "chosen_through")
    PROMISED_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_THROUGH_FIELD_NUMBER: _ClassVar[int]
    promised: Ballot
    chosen_through: int
    def __init__(self, promised: _Optional[_Union[Ballot, _Mapping]] = ..., chosen_through: _Optional[int] = ...) -> None: ...

class PaxosMessage(_message.Message):
    __slots__ = ("shard_id", "src", "dst", "prepare", "promise", "accept", "accepted", "reject", "heartbeat", "heartbeat_ack", "catch_up_request", "catch_up", "install_snapshot", "timeout_now", "rejoin_query", "rejoin_info")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    PREPARE_FIELD_NUMBER: _ClassVar[int]
    PROMISE_FIELD_NUMBER: _ClassVar[int]
    ACCEPT_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REJECT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_ACK_FIELD_NUMBER: _ClassVar[int]
    CATCH_UP_REQUEST_FIELD_NUMBER: _ClassVar[int]
    CATCH_UP_FIELD_NUMBER: _ClassVar[int]
    INSTALL_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_NOW_FIELD_NUMBER: _ClassVar[int]
    REJOIN_QUERY_FIELD_NUMBER: _ClassVar[int]
    REJOIN_INFO_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    src: int
    dst: int
    prepare: Prepare
    promise: Promise
    accept: Accept
    accepted: Accepted
    reject: Reject
    heartbeat: Heartbeat
    heartbeat_ack: HeartbeatAck
    catch_up_request: CatchUpRequest
    catch_up: CatchUp
    install_snapshot: InstallSnapshot
    timeout_now: TimeoutNow
    rejoin_query: RejoinQuery
    rejoin_info: RejoinInfo
    def __init__(self, shard_id: _Optional[int] = ..., src: _Optional[int] = ..., dst: _Optional[int] = ..., prepare: _Optional[_Union[Prepare, _Mapping]] = ..., promise: _Optional[_Union[Promise, _Mapping]] = ..., accept: _Optional[_Union[Accept, _Mapping]] = ..., accepted: _Optional[_Union[Accepted, _Mapping]] = ..., reject: _Optional[_Union[Reject, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., heartbeat_ack: _Optional[_Union[HeartbeatAck, _Mapping]] = ..., catch_up_request: _Optional[_Union[CatchUpRequest, _Mapping]] = ..., catch_up: _Optional[_Union[CatchUp, _Mapping]] = ..., install_snapshot: _Optional[_Union[InstallSnapshot, _Mapping]] = ..., timeout_now: _Optional[_Union[TimeoutNow, _Mapping]] = ..., rejoin_query: _Optional[_Union[RejoinQuery, _Mapping]] = ..., rejoin_info: _Optional[_Union[RejoinInfo, _Mapping]] = ...) -> None: ...

class HostNote(_message.Message):
    __slots__ = ("shard_id", "descriptor", "incarnation", "current")
    SHARD_ID_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTOR_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    shard_id: int
    descriptor: bytes
    incarnation: int
    current: bytes
    def __init__(self, shard_id: _Optional[int] = ..., descriptor: _Optional[bytes] = ..., incarnation: _Optional[int] = ..., current: _Optional[bytes] = ...) -> None: ...

class PeerBatch(_message.Message):
    __slots__ = ("cluster", "from_node", "messages", "ping", "pong", "incarnation", "process", "hosts")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    FROM_NODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    PING_FIELD_NUMBER: _ClassVar[int]
    PONG_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    from_node: int
    messages: _containers.RepeatedCompositeFieldContainer[PaxosMessage]
    ping: int
    pong: int
    incarnation: int
    process: int
    hosts: _containers.RepeatedCompositeFieldContainer[HostNote]
    def __init__(self, cluster: _Optional[str] = ..., from_node: _Optional[int] = ..., messages: _Optional[_Iterable[_Union[PaxosMessage, _Mapping]]] = ..., ping: _Optional[int] = ..., pong: _Optional[int] = ..., incarnation: _Optional[int] = ..., process: _Optional[int] = ..., hosts: _Optional[_Iterable[_Union[HostNote, _Mapping]]] = ...) -> None: ...
