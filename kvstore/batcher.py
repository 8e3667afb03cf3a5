"""Many concurrent KV calls to one node as ``KV.BatchStream`` messages, one per loop turn.

Used by the client library toward any node and by a gateway node toward a shard leader.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from kvstore import compacted, precise_timer, range_changed
from kvstore.v1 import kv_pb2, kv_pb2_grpc

T = TypeVar("T")


class Batcher:
    """Concurrent calls to one node, sent as one ``BatchRequest`` per event-loop turn over a
    long-lived ``KV.BatchStream`` call (a message on an open stream costs far less than a
    call of its own).

    A call joins the open batch. The batch leaves at the end of the current loop turn if
    fewer than ``IN_FLIGHT_MAX`` batches to this node are unanswered, else as soon as one is
    answered (or once it is full): an idle client pays no delay, and a busy one sends few
    large batches instead of many of one item (which is what independent callers produce
    otherwise: each answer releases one caller, who sends one item). The node answers each
    item as it finishes (``partial_answers``), so a read is not held back by a write in its
    batch. Each item keeps its own deadline and fails alone; a broken stream fails every
    unanswered item with its status (the callers retry; writes carry request ids) and the
    next batch opens a new one.
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
        self._ids = itertools.count(1)
        self._waiting: dict[int, _Waiting] = {}  # unanswered batches by id
        self._stream: _Stream | None = None

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
        elif self._flush_handle is None and len(self._waiting) < self.IN_FLIGHT_MAX:
            self._flush_handle = loop.call_soon(self._flush)
        return future

    def close(self) -> None:
        """End the stream; unanswered calls fail with CANCELLED."""
        if self._stream is not None:
            self._stream.close()

    def _flush(self, *, force: bool = False) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self._items or (len(self._waiting) >= self.IN_FLIGHT_MAX and not force):
            return
        loop = asyncio.get_running_loop()
        batch_id = next(self._ids)
        request = kv_pb2.BatchRequest(id=batch_id, items=self._items, partial_answers=True)
        # The caller's deadline covers both WAN legs; the timer is the last resort against a
        # node that never answers (each item is also bounded by its own timeout on the node).
        expiry = loop.call_later(self._timeout + 2 * self._one_way_s, self._expire, batch_id)
        self._waiting[batch_id] = _Waiting(self._futures, expiry)
        self._items, self._futures, self._bytes, self._timeout = [], [], 0, 0.0
        if self._one_way_s:
            precise_timer.for_loop(loop).call_later(self._one_way_s, self._send, request)
        else:
            self._send(request)

    def _send(self, request: kv_pb2.BatchRequest) -> None:
        waiting = self._waiting.get(request.id)
        if waiting is None:
            return  # expired while crossing the emulated WAN
        if self._stream is None or self._stream.broken:
            self._stream = _Stream(self._stub, self._metadata, self._arrived, self._broke)
        waiting.stream = self._stream
        self._stream.send(request)

    def _arrived(self, answer: kv_pb2.BatchResponse) -> None:
        if self._one_way_s:
            precise_timer.for_loop().call_later(self._one_way_s, self._answered, answer)
        else:
            self._answered(answer)

    def _answered(self, answer: kv_pb2.BatchResponse) -> None:
        waiting = self._waiting.get(answer.id)
        if waiting is None:
            return
        indexes = answer.item_indexes or range(len(answer.results))  # a part, or the whole
        for index, result in zip(indexes, answer.results, strict=True):
            if index not in waiting.open:
                continue  # answered twice: the node broke its contract; keep the first
            waiting.open.discard(index)
            future = waiting.futures[index]
            if future.done():
                continue
            which = result.WhichOneof("response")
            if which == "error" or which is None:
                code = _STATUS_CODES.get(result.error.code, grpc.StatusCode.UNKNOWN)
                trailers: tuple[tuple[str, str | bytes], ...] = (
                    range_changed.trailer(result.error.range)
                    if result.error.HasField("range")
                    else ()
                )
                if result.error.compacted_revision:
                    trailers = (*trailers, *compacted.trailer(result.error.compacted_revision))
                future.set_exception(_rpc_error(code, result.error.message, trailers))
            else:
                future.set_result(getattr(result, which))
        if not waiting.open:
            self._take(answer.id)
            self._resume()

    def _broke(self, stream: _Stream, code: grpc.StatusCode, details: str) -> None:
        """Every batch sent on ``stream`` and not answered fails with the stream's status."""
        for batch_id in [i for i, waiting in self._waiting.items() if waiting.stream is stream]:
            self._fail(batch_id, code, details)
        self._resume()

    def _expire(self, batch_id: int) -> None:
        self._fail(batch_id, grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded")
        self._resume()

    def _fail(self, batch_id: int, code: grpc.StatusCode, details: str) -> None:
        waiting = self._take(batch_id)
        for future in waiting.futures if waiting is not None else ():
            if not future.done():
                future.set_exception(_rpc_error(code, details))

    def _take(self, batch_id: int) -> _Waiting | None:
        """An unanswered batch, which stops waiting (None: it was not waiting)."""
        waiting = self._waiting.pop(batch_id, None)
        if waiting is not None:
            waiting.expiry.cancel()
        return waiting

    def _resume(self) -> None:
        """A batch left the window: send what queued up behind it."""
        if self._items and self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)


class _Waiting:
    """A batch sent and not wholly answered: its callers, the items still open, its timer,
    and the stream it went out on (None while it crosses the emulated WAN)."""

    __slots__ = ("expiry", "futures", "open", "stream")

    def __init__(self, futures: list[asyncio.Future[Any]], expiry: asyncio.TimerHandle) -> None:
        self.futures = futures
        self.open = set(range(len(futures)))
        self.expiry = expiry
        self.stream: _Stream | None = None


class _Stream:
    """One ``KV.BatchStream`` call: requests written in order by one writer, answers read
    by one reader; ``on_broken`` once, when the call ends for any reason."""

    def __init__(
        self,
        stub: kv_pb2_grpc.KVStub,
        metadata: tuple[tuple[str, str], ...],
        on_answer: Callable[[kv_pb2.BatchResponse], None],
        on_broken: Callable[[_Stream, grpc.StatusCode, str], None],
    ) -> None:
        self.broken = False
        self._call = stub.BatchStream(metadata=metadata)
        self._on_answer = on_answer
        self._on_broken = on_broken
        self._outbox: deque[kv_pb2.BatchRequest] = deque()
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    def send(self, request: kv_pb2.BatchRequest) -> None:
        self._outbox.append(request)
        self._wake.set()

    def close(self) -> None:
        self._call.cancel()

    async def _run(self) -> None:
        writer = asyncio.get_running_loop().create_task(self._write())
        code, details = grpc.StatusCode.UNAVAILABLE, "the node ended the stream"
        try:
            while (answer := await self._call.read()) is not grpc.aio.EOF:
                self._on_answer(answer)
        except grpc.aio.AioRpcError as err:
            code, details = err.code(), err.details() or ""
            if code is grpc.StatusCode.INTERNAL:
                # The transport's word for a reset stream (RST_STREAM, a proxy or network
                # dropping it). It says nothing about the batches on it, whose outcome is
                # unknown, as after a lost connection: retryable, like UNAVAILABLE (writes
                # carry request ids, so a retry applies once).
                code, details = grpc.StatusCode.UNAVAILABLE, f"the stream broke: {details}"
            elif code is grpc.StatusCode.CANCELLED:
                # Cancelled by the node (it is stopping: GOAWAY cancels its calls), not by
                # this client (that is the CancelledError below): another node may answer.
                code, details = grpc.StatusCode.UNAVAILABLE, f"the node cancelled: {details}"
        except asyncio.CancelledError:
            code, details = grpc.StatusCode.CANCELLED, "the client closed"
        finally:
            writer.cancel()
            self.broken = True
            self._on_broken(self, code, details)

    async def _write(self) -> None:
        outbox = self._outbox
        try:
            while True:
                while not outbox:
                    self._wake.clear()
                    await self._wake.wait()
                await self._call.write(outbox.popleft())
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
            self._call.cancel()  # the reader sees the call end and reports it


async def across_wan(one_way_s: float, call: Callable[[], Awaitable[T]]) -> T:
    """``call()`` as if the node were ``one_way_s`` away (an emulated WAN): the request
    leaves, and the answer arrives, that much later."""
    if one_way_s:
        await precise_timer.for_loop().sleep(one_way_s)
    response = await call()
    if one_way_s:
        await precise_timer.for_loop().sleep(one_way_s)
    return response


_STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _rpc_error(
    code: grpc.StatusCode, details: str, trailers: tuple[tuple[str, str | bytes], ...] = ()
) -> grpc.aio.AioRpcError:
    """An item's failure, shaped like the unary call's would have been."""
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailers), details)
