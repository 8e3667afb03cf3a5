"""The product's decisions, pure like ``paxos``: commands, their codec, the KV state machine.

Storage, network and processes are adapters elsewhere in ``kvstore``; nothing here does I/O.
"""

from kvstore.model.codec import CodecError
from kvstore.model.commands import (
    ApplyResult,
    Command,
    Compare,
    CompareOp,
    Delete,
    DeleteResult,
    GetResult,
    KeyValue,
    Malformed,
    OpKind,
    PlacementSet,
    Put,
    PutResult,
    RequestId,
    SetPlacement,
    StaleRequest,
    Target,
    Txn,
    TxnOp,
    TxnResult,
    decode_command,
    decode_result,
    encode_command,
    encode_result,
)
from kvstore.model.engine import Engine, MemoryEngine, Record
from kvstore.model.state_machine import KvStateMachine, SessionTable

__all__ = [
    "ApplyResult",
    "CodecError",
    "Command",
    "Compare",
    "CompareOp",
    "Delete",
    "DeleteResult",
    "Engine",
    "GetResult",
    "KeyValue",
    "KvStateMachine",
    "Malformed",
    "MemoryEngine",
    "OpKind",
    "PlacementSet",
    "Put",
    "PutResult",
    "Record",
    "RequestId",
    "SessionTable",
    "SetPlacement",
    "StaleRequest",
    "Target",
    "Txn",
    "TxnOp",
    "TxnResult",
    "decode_command",
    "decode_result",
    "encode_command",
    "encode_result",
]
