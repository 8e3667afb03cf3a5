"""When a node refuses a request for the range it was routed by: only when the node's view
of the key's range is newer than the caller's, never when the node lags the caller."""

from __future__ import annotations

import grpc

from kvstore import range_changed
from kvstore.v1 import kv_pb2


def test_a_route_is_stale_only_against_a_newer_view() -> None:
    routed = kv_pb2.RangeVersion(shard_id=3, generation=2)
    assert not range_changed.stale(routed, 3, 2)  # the same range: served
    assert range_changed.stale(routed, 3, 3)  # the range split or merged since
    assert range_changed.stale(routed, 9, 3)  # the key went to the split's right half
    assert range_changed.stale(routed, 9, 2)  # another range of the same generation
    assert not range_changed.stale(routed, 3, 1)  # this node lags: it routes by its own map
    assert not range_changed.stale(routed, 9, 1)


def test_the_range_travels_in_the_trailer_and_only_with_aborted() -> None:
    info = kv_pb2.RangeInfo(shard_id=4, start=b"k", end=b"", replicas=[1, 2, 3], generation=2)
    trailers = grpc.aio.Metadata(*range_changed.trailer(info))
    err = grpc.aio.AioRpcError(grpc.StatusCode.ABORTED, grpc.aio.Metadata(), trailers, "moved")
    assert range_changed.range_of(err) == info
    other = grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), trailers, "")
    assert range_changed.range_of(other) is None
    bare = grpc.aio.AioRpcError(grpc.StatusCode.ABORTED, grpc.aio.Metadata(), grpc.aio.Metadata())
    assert range_changed.range_of(bare) is None
    garbage = grpc.aio.Metadata((range_changed.RANGE_TRAILER, b"\xff\xff\xff"))
    bad = grpc.aio.AioRpcError(grpc.StatusCode.ABORTED, grpc.aio.Metadata(), garbage, "")
    assert range_changed.range_of(bad) is None
