"""The "range changed" answer: how a node tells a caller that the range it routed by is
stale, and how a caller reads the new range from the error.

A request names the range it routed by (``RangeVersion routed_by``). A node that knows a
newer descriptor for the request's key answers ``ABORTED`` with that descriptor as a
serialized ``RangeInfo`` in the ``kvstore-range-bin`` trailer (on a unary call) or in
``ItemStatus.range`` (an item of a batch; ``kvstore.batcher`` turns it back into the
trailer), so every caller reads it one way: ``range_of``. Nothing was done: the caller
routes by the new range and retries with the same request id.
"""

from __future__ import annotations

from typing import Any

import grpc

from kvstore.v1 import kv_pb2

RANGE_TRAILER = "kvstore-range-bin"
CODE = grpc.StatusCode.ABORTED


def trailer(info: kv_pb2.RangeInfo) -> tuple[tuple[str, bytes], ...]:
    return ((RANGE_TRAILER, info.SerializeToString()),)


def range_of(err: grpc.aio.AioRpcError | grpc.RpcError) -> kv_pb2.RangeInfo | None:
    """The range a "range changed" answer carries (None: the error is another one)."""
    code = err.code() if callable(getattr(err, "code", None)) else None
    if code is not CODE:
        return None
    trailers: Any = err.trailing_metadata() or ()
    for key, value in trailers:
        if key == RANGE_TRAILER and isinstance(value, bytes):
            info = kv_pb2.RangeInfo()
            try:
                info.ParseFromString(value)
            except Exception:
                return None
            return info
    return None


def stale(routed: kv_pb2.RangeVersion, shard_id: int, generation: int) -> bool:
    """Whether a caller that routed by ``routed`` has an older view than the node's range
    ``shard_id`` at ``generation`` for the key (a node that lags the caller is not: it routes
    by its own map, and the range itself refuses what it no longer holds)."""
    if (routed.shard_id, routed.generation) == (shard_id, generation):
        return False
    return generation >= routed.generation
