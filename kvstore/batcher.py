"""Many concurrent KV calls to one node as one ``KV.Batch`` gRPC call per event-loop turn.

Used by the client library toward any node and by a gateway node toward a shard leader.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from kvstore.v1 import kv_pb2, kv_pb2_grpc

T = TypeVar("T")


class Batcher:
    """Concurrent calls to one node, sent as one ``KV.Batch`` per event-loop turn.

    A call joins the open batch. The batch leaves at the end of the current loop turn if
    fewer than ``IN_FLIGHT_MAX`` batches to this node are unanswered, else as soon as one is
    answered (or once it is full): an idle client pays no delay, and a busy one sends few
    large batches instead of many of one item (which is what independent callers produce
    otherwise: each answer releases one caller, who sends one item). Each item keeps its own
    deadline and fails alone; a failed batch call fails every item with the call's status.
    """

    ITEMS_MAX = 256
    BYTES_MAX = 1 << 20
    IN_FLIGHT_MAX = 2

    def __init__(
        self,
        stub: kv_pb2_grpc.KVStub,
        metadata: tuple[tuple[str, str], ...] = (),
        *,
        one_way_delay_s: float = 0.0,
    ) -> None:
        """``one_way_delay_s``: an emulated WAN between us and the node (each way)."""
        self._stub = stub
        self._metadata = metadata
        self._one_way_s = one_way_delay_s
        self._items: list[kv_pb2.BatchItem] = []
        self._futures: list[asyncio.Future[Any]] = []
        self._bytes = 0
        self._timeout = 0.0
        self._flush_handle: asyncio.Handle | None = None
        self._sending: set[asyncio.Task[None]] = set()

    def submit(self, kind: str, request: Any, timeout: float) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        item = kv_pb2.BatchItem(timeout_ms=max(1, int(timeout * 1000)), **{kind: request})
        self._items.append(item)
        self._futures.append(future)
        self._bytes += item.ByteSize()
        self._timeout = max(self._timeout, timeout)
        if len(self._items) >= self.ITEMS_MAX or self._bytes >= self.BYTES_MAX:
            self._flush(force=True)
        elif self._flush_handle is None and len(self._sending) < self.IN_FLIGHT_MAX:
            self._flush_handle = loop.call_soon(self._flush)
        return future

    def _flush(self, *, force: bool = False) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self._items or (len(self._sending) >= self.IN_FLIGHT_MAX and not force):
            return
        items, futures, timeout = self._items, self._futures, self._timeout
        self._items, self._futures, self._bytes, self._timeout = [], [], 0, 0.0
        task = asyncio.get_running_loop().create_task(self._send(items, futures, timeout))
        self._sending.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        if self._items and self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)

    async def _send(
        self, items: list[kv_pb2.BatchItem], futures: list[asyncio.Future[Any]], timeout: float
    ) -> None:
        try:
            response = await across_wan(
                self._one_way_s,
                lambda: self._stub.Batch(
                    kv_pb2.BatchRequest(items=items), timeout=timeout, metadata=self._metadata
                ),
            )
        except grpc.aio.AioRpcError as err:
            for future in futures:
                if not future.done():
                    future.set_exception(err)
            return
        for future, result in zip(futures, response.results, strict=True):
            if future.done():
                continue
            which = result.WhichOneof("response")
            if which == "error" or which is None:
                code = _STATUS_CODES.get(result.error.code, grpc.StatusCode.UNKNOWN)
                future.set_exception(_rpc_error(code, result.error.message))
            else:
                future.set_result(getattr(result, which))


async def across_wan(one_way_s: float, call: Callable[[], Awaitable[T]]) -> T:
    """``call()`` as if the node were ``one_way_s`` away (an emulated WAN): the request
    leaves, and the answer arrives, that much later."""
    if one_way_s:
        await asyncio.sleep(one_way_s)
    response = await call()
    if one_way_s:
        await asyncio.sleep(one_way_s)
    return response


_STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    """An item's failure, shaped like the unary call's would have been."""
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)
