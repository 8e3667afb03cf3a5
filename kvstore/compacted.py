"""The "revision compacted" answer: how a node tells a caller that a read or watch named a
revision below the shard's compacted one, and how a caller reads where history starts.

The status is ``OUT_OF_RANGE`` (as etcd's ``ErrCompacted``); the compacted revision is in
the ``kvstore-compacted-revision`` trailer (decimal) on a unary call, or in
``ItemStatus.compacted_revision`` on an item of a batch (``kvstore.batcher`` turns it back
into the trailer), so every caller reads it one way: ``compacted_of``. A revision above the
shard's is ``OUT_OF_RANGE`` too, without the trailer.
"""

from __future__ import annotations

from typing import Any

import grpc

COMPACTED_TRAILER = "kvstore-compacted-revision"
CODE = grpc.StatusCode.OUT_OF_RANGE


def trailer(compacted: int) -> tuple[tuple[str, str], ...]:
    return ((COMPACTED_TRAILER, str(compacted)),)


def compacted_of(err: grpc.aio.AioRpcError | grpc.RpcError) -> int | None:
    """The compacted revision a "revision compacted" answer names (None: another error)."""
    code = err.code() if callable(getattr(err, "code", None)) else None
    if code is not CODE:
        return None
    trailers: Any = err.trailing_metadata() or ()
    for key, value in trailers:
        if key == COMPACTED_TRAILER and isinstance(value, str) and value.isdigit():
            return int(value)
    return None
