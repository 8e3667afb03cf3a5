from kvstore.v1 import kv_pb2 as _kv_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CounterTakeRequest(_message.Message):
    __slots__ = ("name", "count", "request_id", "routed_by")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ROUTED_BY_FIELD_NUMBER: _ClassVar[int]
    name: str
    count: int
    request_id: _kv_pb2.RequestId
    routed_by: _kv_pb2.RangeVersion
    def __init__(self, name: _Optional[str] = ..., count: _Optional[int] = ..., request_id: _Optional[_Union[_kv_pb2.RequestId, _Mapping]] = ..., routed_by: _Optional[_Union[_kv_pb2.RangeVersion, _Mapping]] = ...) -> None: ...

class CounterTakeResponse(_message.Message):
    __slots__ = ("start", "end", "header")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    start: int
    end: int
    header: _kv_pb2.ResponseHeader
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ..., header: _Optional[_Union[_kv_pb2.ResponseHeader, _Mapping]] = ...) -> None: ...

class CounterGetRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class CounterGetResponse(_message.Message):
    __slots__ = ("value", "header")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    value: int
    header: _kv_pb2.ResponseHeader
    def __init__(self, value: _Optional[int] = ..., header: _Optional[_Union[_kv_pb2.ResponseHeader, _Mapping]] = ...) -> None: ...

class CounterApplyRequest(_message.Message):
    __slots__ = ("key", "command", "routed_by")
    KEY_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ROUTED_BY_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    command: bytes
    routed_by: _kv_pb2.RangeVersion
    def __init__(self, key: _Optional[bytes] = ..., command: _Optional[bytes] = ..., routed_by: _Optional[_Union[_kv_pb2.RangeVersion, _Mapping]] = ...) -> None: ...

class CounterApplyResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: bytes
    def __init__(self, result: _Optional[bytes] = ...) -> None: ...
