"""The ``KV`` gRPC service: validate at the edge, route to the shard leader, map results.

Rules:
- Bad input is refused before anything is proposed, with ``INVALID_ARGUMENT`` (empty or
  oversized key, oversized value, inverted scan range) or ``FAILED_PRECONDITION`` (a Txn
  spanning shards); nothing changes.
- A key's shard is looked up in this node's range map: the descriptors of the ranges it
  hosts, the configured first layout, and what refusals taught it. A range that no longer
  holds a key (a split moved it) refuses it with where it went (``OutOfRange``, or a read's
  ``RangeMovedError``); the request is routed again with the same request id, at most
  ``REROUTES_MAX`` times, invisibly to the caller.
- Any node accepts any request. If this node's replica of the shard leads, it serves;
  otherwise it forwards to the leader it knows, once: a forwarded request carries
  ``kv-forwarded`` metadata and is never forwarded again (no cycles), so the first node
  retries until the caller's deadline. Requests forwarded to one node in the same event-loop
  turn travel as one ``KV.BatchStream`` message. Only a shard with no reachable leader
  surfaces as ``UNAVAILABLE`` (retryable).
- A write is retried with the same request id after a dropped proposal or a forwarded attempt
  that timed out (each waits at most ``FORWARD_ATTEMPT_S_MAX``), so the session table makes
  it apply once.
- A write forwarded from a node that hosts a follower of the shard is answered by whichever
  comes first: the leader's reply, or this replica applying the command. The follower
  applies it as soon as it holds the leader's acceptance and its own (``paxos.acceptor``),
  one WAN leg before the leader's reply could arrive. Only commands with a request id:
  their bytes are unique, so the applied command is the caller's.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any, NoReturn, TypeVar

import grpc

from cluster import ClusterConfig, RangeDescriptor, RangeMap, initial_layout
from cluster.config import Limits
from cluster.counter_keys import COUNTERS
from cluster.stream_keys import PARTITIONS, TOPICS
from kvstore import range_changed
from kvstore.api.statuses import history_refusal, shown_status, status_of_result
from kvstore.api.watch_service import WatchStream
from kvstore.batcher import Batcher, across_wan
from kvstore.channels import CHANNEL_OPTIONS
from kvstore.compacted import COMPACTED_TRAILER
from kvstore.model import (
    ApplyResult,
    Command,
    Compare,
    CompareOp,
    Delete,
    DeleteResult,
    GetResult,
    KeyValue,
    OpKind,
    OutOfRange,
    Put,
    PutResult,
    RequestId,
    Target,
    Txn,
    TxnOp,
    TxnResult,
    decode_command,
)
from kvstore.model.codec import CodecError
from kvstore.model.commands import TXN_COMPARES_MAX, TXN_OPS_MAX
from kvstore.model.history import FutureRevisionError, HistoryError
from kvstore.model.leases import LEASE_ID_MAX
from kvstore.operator_state import OPERATOR
from kvstore.runtime.node import (
    CommandTooLargeError,
    NodeRuntime,
    NodeStoppedError,
    NotLeaderError,
    OverloadedError,
    ProposalDroppedError,
    RangeMovedError,
)
from kvstore.v1 import kv_pb2, kv_pb2_grpc

DEFAULT_DEADLINE_S = 10.0
# One forwarded attempt waits at most this long: a leader that stopped answering (paused,
# partitioned away) is replaced within an election timeout, so waiting out the caller's whole
# deadline on it would turn a 200 ms failover into a timeout. A retry carries the same
# request id, so a write that did apply on the first attempt applies once.
FORWARD_ATTEMPT_S_MAX = 0.5
FORWARDED = ("kv-forwarded", "1")
# A scan answers at most this much of keys and values (always at least one key), with
# ``more`` set: 10,000 keys of 1 MiB would otherwise be one 10 GB message and as much memory.
SCAN_RESPONSE_BYTES_MAX = 16 << 20
# A request routed again this many times (its range moved under it each time) gives up as
# UNAVAILABLE: splits are rare, so this only ends a loop that would otherwise not end.
REROUTES_MAX = 16
R = TypeVar("R")


class KvService(kv_pb2_grpc.KVServicer):
    def __init__(
        self,
        cluster: ClusterConfig,
        runtime: NodeRuntime,
        dc: str,
        addresses: dict[int, str] | None = None,
        *,
        forward_delay_s: dict[int, float] | None = None,
    ) -> None:
        """``forward_delay_s``: per node, an emulated one-way WAN delay to it (``[wan]``)."""
        self._cluster = cluster
        self._forward_delay_s = forward_delay_s or {}
        self._addresses = addresses or {n.node_id: n.address for n in cluster.nodes}
        self._runtime = runtime
        self._dc = dc
        self._ranges = RangeMap(initial_layout(cluster))
        self._layout_seen = -1
        self._limits = cluster.limits
        self._channels: dict[int, grpc.aio.Channel] = {}
        self._batchers: dict[int, Batcher] = {}
        # Whether a lease was ever granted (the lease service's ``known``): a put may attach
        # a key only to such a lease. None: leases are not served (every lease is unknown).
        self.lease_known: (
            Callable[[int, grpc.aio.ServicerContext[Any, Any]], Awaitable[bool]] | None
        ) = None

    async def close(self) -> None:
        for batcher in self._batchers.values():
            batcher.close()
        for channel in self._channels.values():
            await channel.close()

    # ------------------------------------------------------------------ RPCs

    async def Put(  # noqa: N802
        self, request: kv_pb2.PutRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> kv_pb2.PutResponse:
        await self._check_key(request.key, context)
        await self._check_writable([request.key], context)
        if len(request.value) > self._limits.value_bytes_max:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"value over {self._limits.value_bytes_max} bytes"
            )
        if request.lease and not is_forwarded(context):
            await self._check_lease(request.lease, context)
        command = Put(request_id_of(request.request_id), request.key, request.value, request.lease)
        shard, outcome = await self.write_keys(
            request,
            [request.key],
            command,
            context,
            lambda n, t: self._forward(n, "put", request, t),
        )
        if isinstance(outcome, kv_pb2.PutResponse):
            return outcome
        result = await self.expect(outcome, PutResult, context)
        response = kv_pb2.PutResponse(header=self.header(shard, result.revision))
        if request.prev_kv and result.prev is not None:
            response.prev_kv.CopyFrom(_kv(result.prev))
        return response

    async def _check_lease(
        self, lease_id: int, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        if not 0 < lease_id <= LEASE_ID_MAX:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"a lease id is within 1..{LEASE_ID_MAX}"
            )
        if self.lease_known is None or not await self.lease_known(lease_id, context):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no lease {lease_id}")

    async def Delete(  # noqa: N802
        self, request: kv_pb2.DeleteRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> kv_pb2.DeleteResponse:
        await self._check_key(request.key, context)
        await self._check_writable([request.key], context)
        command = Delete(request_id_of(request.request_id), request.key)
        shard, outcome = await self.write_keys(
            request,
            [request.key],
            command,
            context,
            lambda n, t: self._forward(n, "delete", request, t),
        )
        if isinstance(outcome, kv_pb2.DeleteResponse):
            return outcome
        result = await self.expect(outcome, DeleteResult, context)
        response = kv_pb2.DeleteResponse(
            deleted=result.deleted, header=self.header(shard, result.revision)
        )
        if request.prev_kv and result.prev is not None:
            response.prev_kv.CopyFrom(_kv(result.prev))
        return response

    async def Get(  # noqa: N802
        self, request: kv_pb2.GetRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> kv_pb2.GetResponse:
        await self._check_key(request.key, context)
        routed = _routed_by(request)
        reroutes = _Reroutes()
        while await reroutes.again():
            d = self.locate(request.key)
            shard = d.range_id
            if routed is not None:
                await self._refuse_if_stale(routed, d, context)
                routed = None
            _stamp(request, d)
            local, bound = self._stale_read_here(
                shard, request.consistency, request.max_staleness_ms
            )
            try:
                if request.revision and self._hosts(shard):
                    try:
                        # History at a revision this replica applied is final: what any
                        # replica would answer, so it answers, whatever the consistency.
                        return self._get_local(shard, request.key, 0.0, request.revision)
                    except FutureRevisionError:
                        local = False  # not applied here yet: the leader's replica answers
                if local:
                    return self._get_local(shard, request.key, bound, request.revision)
                outcome = await self._at_leader(
                    d, request.key, context, lambda n, t: self._forward(n, "get", request, t)
                )
                if outcome is _MOVED:
                    continue
                if isinstance(outcome, kv_pb2.GetResponse):
                    return outcome
                return self._get_local(shard, request.key, 0.0, request.revision)
            except RangeMovedError as moved:
                self._ranges.update([moved.descriptor])
            except HistoryError as refused:
                await _refuse_history(context, refused)
        return await _moving(context, write=False)

    async def Scan(  # noqa: N802
        self, request: kv_pb2.ScanRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> kv_pb2.ScanResponse:
        start, end = request.start, request.end
        if end and end <= start:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "scan end must be after start (or empty)"
            )
        most = self._limits.scan_keys_max
        # A node forwarding a scan asks the shard for one key more than it still needs (to
        # learn whether more exist): one over the maximum is that, from a node, not a caller.
        allowed = most + 1 if is_forwarded(context) else most
        if request.limit > allowed:
            # Refused, not capped: a caller paging by its own limit would miss the cut silently.
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"scan limit {request.limit} is over the maximum {most} (0 asks for the maximum)",
            )
        remaining = request.limit or most
        bytes_left = SCAN_RESPONSE_BYTES_MAX
        response = kv_pb2.ScanResponse()
        # One shard at a time, each read at its own linearizable point. Asking every shard
        # for one key more than still needed tells exactly whether more keys exist. The
        # pieces are looked up again after each (a split may move the rest meanwhile).
        cursor = start
        reroutes = _Reroutes()
        await reroutes.again()  # the first attempt
        while pieces := self._map().overlapping(cursor, end):
            lo, hi, d = pieces[0]
            try:
                part = await self._scan_shard(
                    d,
                    lo,
                    hi,
                    limit=remaining + 1,
                    consistency=request.consistency,
                    max_staleness_ms=request.max_staleness_ms,
                    revision=request.revision,
                    context=context,
                )
            except RangeMovedError as moved:
                self._ranges.update([moved.descriptor])
                part = None
            except HistoryError as refused:
                await _refuse_history(context, refused)
            if part is None:
                if not await reroutes.again():
                    return await _moving(context, write=False)
                continue
            taken: list[kv_pb2.KeyValue] = []
            for kv in part.kvs[:remaining]:
                bytes_left -= len(kv.key) + len(kv.value)
                if bytes_left < 0 and (response.kvs or taken):
                    break  # the answer is full: the caller continues after the last key
                taken.append(kv)
            response.kvs.extend(taken)
            remaining -= len(taken)
            response.header.CopyFrom(part.header)
            if part.more or len(part.kvs) > len(taken):
                response.more = True
                break
            if hi == b"":
                break
            cursor = hi
        return response

    async def Txn(  # noqa: N802
        self, request: kv_pb2.TxnRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> kv_pb2.TxnResponse:
        keys = [c.key for c in request.compare] + [
            _op_key(op) for op in (*request.success, *request.failure)
        ]
        for key in keys:
            await self._check_key(key, context)
        writes = [
            _op_key(op)
            for op in (*request.success, *request.failure)
            if op.WhichOneof("request") != "get"
        ]
        await self._check_writable(writes, context)
        if max(len(request.success), len(request.failure)) > TXN_OPS_MAX:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"a transaction has at most {TXN_OPS_MAX} ops"
            )
        if len(request.compare) > TXN_COMPARES_MAX:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"a transaction has at most {TXN_COMPARES_MAX} compares",
            )
        values = sum(len(c.value) for c in request.compare) + sum(
            len(op.put.value) for op in (*request.success, *request.failure)
        )
        if values > self._limits.value_bytes_max:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"a transaction's values together are over {self._limits.value_bytes_max} bytes",
            )
        if not is_forwarded(context):
            for lease_id in {op.put.lease for op in (*request.success, *request.failure)} - {0}:
                await self._check_lease(lease_id, context)
        command = Txn(
            request_id_of(request.request_id),
            tuple(_compare(c) for c in request.compare),
            tuple(_op(op) for op in request.success),
            tuple(_op(op) for op in request.failure),
        )
        shard, outcome = await self.write_keys(
            request,
            keys or [b""],
            command,
            context,
            lambda n, t: self._forward(n, "txn", request, t),
        )
        if isinstance(outcome, kv_pb2.TxnResponse):
            return outcome
        result = await self.expect(outcome, TxnResult, context)
        return kv_pb2.TxnResponse(
            succeeded=result.succeeded,
            responses=[self._response_op(shard, r) for r in result.results],
            header=self.header(shard, result.revision),
        )

    async def Batch(  # noqa: N802
        self, request: kv_pb2.BatchRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> kv_pb2.BatchResponse:
        return await self._batch(request, context)

    async def Watch(  # noqa: N802
        self,
        requests: AsyncIterator[kv_pb2.WatchRequest],
        _context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[kv_pb2.WatchResponse]:
        """Watches served from this node's replicas (``kvstore.api.watch_service``)."""
        async for response in WatchStream(self._runtime, self._dc).serve(requests):
            yield response

    async def BatchStream(  # noqa: N802
        self,
        requests: AsyncIterator[kv_pb2.BatchRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[kv_pb2.BatchResponse]:
        """Each request is served as ``Batch`` would, concurrently with the others, and
        answered as soon as it is done, or item by item if it asked for ``partial_answers``.
        A reader task takes requests while answers leave."""
        answers: asyncio.Queue[kv_pb2.BatchResponse | None] = asyncio.Queue()
        serving: set[asyncio.Task[Any]] = set()
        parts = _Parts(answers)

        async def serve(request: kv_pb2.BatchRequest) -> None:
            answer = await self._batch(request, context)
            answer.id = request.id
            answers.put_nowait(answer)

        def start(request: kv_pb2.BatchRequest) -> None:
            tasks: list[asyncio.Task[Any]]
            if not request.partial_answers or not request.items:
                tasks = [asyncio.create_task(serve(request))]
            else:
                tasks = [asyncio.create_task(self._item(item, context)) for item in request.items]
                parts.expect(request.id, len(tasks))
                for index, task in enumerate(tasks):
                    task.add_done_callback(partial(parts.done, request.id, index))
            for task in tasks:
                serving.add(task)
                task.add_done_callback(serving.discard)

        async def read() -> None:
            try:
                async for request in requests:
                    start(request)
                if serving:  # the caller is done sending: answer what it sent, then end
                    await asyncio.wait(set(serving))
            finally:
                parts.flush()
                answers.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (answer := await answers.get()) is not None:
                yield answer
            await reader  # a failed read (a malformed request) fails the call
        finally:
            reader.cancel()
            for task in serving:
                task.cancel()

    async def _batch(
        self, request: kv_pb2.BatchRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> kv_pb2.BatchResponse:
        results = await asyncio.gather(*(self._item(item, context) for item in request.items))
        return kv_pb2.BatchResponse(results=results)

    async def _item(
        self, item: kv_pb2.BatchItem, context: grpc.aio.ServicerContext[Any, Any]
    ) -> kv_pb2.BatchResult:
        """One batch item, served as its unary call would be; its failure is its result."""
        kind = item.WhichOneof("request")
        if kind is None:
            return _item_error(grpc.StatusCode.INVALID_ARGUMENT, "empty batch item")
        handler: Callable[[Any, Any], Awaitable[Any]] = getattr(self, _HANDLERS[kind])
        try:
            response = await handler(getattr(item, kind), _ItemContext(context, item))
        except _ItemAbortedError as aborted:
            result = _item_error(aborted.code, aborted.details)
            for key, value in aborted.trailers:
                if key == range_changed.RANGE_TRAILER:
                    result.error.range.ParseFromString(value)
                elif key == COMPACTED_TRAILER:
                    result.error.compacted_revision = int(value)
            return result
        except NodeStoppedError as stopped:  # as the interceptor does for a unary call
            return _item_error(shown_status(stopped), str(stopped))
        return kv_pb2.BatchResult(**{kind: response})

    # ------------------------------------------------------------------ routing

    # ------------------------------------------------------------------ for other services

    @property
    def limits(self) -> Limits:
        return self._limits

    @property
    def node_id(self) -> int:
        return self._runtime.node_id

    def leader_of(self, shard: int) -> int | None:
        """The shard's leader as this node knows it (None: unknown)."""
        return self._runtime.leader_hint(shard) if self._hosts(shard) else None

    def dc_of(self, node: int) -> str:
        return self._cluster.node(node).dc

    def channel(self, node: int) -> grpc.aio.Channel:
        channel = self._channels.get(node)
        if channel is None:
            channel = grpc.aio.insecure_channel(self._addresses[node], options=CHANNEL_OPTIONS)
            self._channels[node] = channel
        return channel

    async def write_keys(
        self,
        request: Any,
        keys: list[bytes],
        command: Command,
        context: grpc.aio.ServicerContext[Any, Any],
        forward: Callable[[int, float], Awaitable[Any]],
    ) -> tuple[int, Any]:
        """Propose ``command`` (whose keys are ``keys``) to the shard holding them, routed
        again with the same request id while a split moves them: its shard and outcome.
        ``request`` (the caller's) names the range it is routed by, for each forward."""
        routed = _routed_by(request)
        reroutes = _Reroutes()
        while await reroutes.again():
            ranges = {d.range_id: d for d in map(self.locate, keys)}
            if len(ranges) > 1:
                await context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"a transaction must stay within one shard; its keys span {sorted(ranges)}",
                )
            (d,) = ranges.values()
            if routed is not None:
                await self._refuse_if_stale(routed, d, context)
                routed = None
            _stamp(request, d)
            outcome = await self._write(d, keys[0], command, context, forward)
            if isinstance(outcome, OutOfRange):
                self._ranges.update([outcome.descriptor, *outcome.successors])
            elif outcome is not _MOVED:
                return d.range_id, outcome
        return await _moving(context, write=True)

    async def _write(
        self,
        d: RangeDescriptor,
        key: bytes,
        command: Command,
        context: grpc.aio.ServicerContext[Any, Any],
        forward: Callable[[int, float], Awaitable[Any]],
    ) -> Any:
        shard = d.range_id

        async def local() -> ApplyResult:
            return await self._runtime.submit(shard, command)

        if command.request.client_id and self._hosts(shard):
            forward = partial(self._forward_and_witness, shard, command, forward)
        return await self._route(d, key, context, local, forward, write=True)

    async def _forward_and_witness(
        self,
        shard: int,
        command: Command,
        forward: Callable[[int, float], Awaitable[Any]],
        node: int,
        timeout: float,
    ) -> Any:
        """``forward``, or this replica's own result for ``command`` if it comes first."""
        witnessed = self._runtime.witness(shard, command)  # before the command can apply
        answered = asyncio.ensure_future(forward(node, timeout))
        answered.add_done_callback(_consume)  # if unwanted, its failure is no news
        try:
            await asyncio.wait((witnessed, answered), return_when=asyncio.FIRST_COMPLETED)
        finally:
            witnessed.cancel()
        if witnessed.done() and not witnessed.cancelled():
            return witnessed.result()
        return answered.result()

    async def _at_leader(
        self,
        d: RangeDescriptor,
        key: bytes,
        context: grpc.aio.ServicerContext[Any, Any],
        forward: Callable[[int, float], Awaitable[Any]],
    ) -> Any:
        async def local() -> None:
            await self._runtime.linearizable_point(d.range_id)

        return await self._route(d, key, context, local, forward, write=False)

    async def _route(
        self,
        d: RangeDescriptor,
        key: bytes,
        context: grpc.aio.ServicerContext[Any, Any],
        local: Callable[[], Awaitable[R]],
        forward: Callable[[int, float], Awaitable[Any]],
        *,
        write: bool,
    ) -> Any:
        """Serve here or at the leader until the deadline. ``write``: the request may have
        been applied by an attempt that timed out, so its refusal must say so (a read's
        never changes anything). ``_MOVED`` if ``key`` left range ``d`` meanwhile (as this
        node learned it): the caller routes again."""
        shard = d.range_id
        loop = asyncio.get_running_loop()
        remaining_s = context.time_remaining()
        deadline = loop.time() + (remaining_s if remaining_s is not None else DEFAULT_DEADLINE_S)
        forwarded = is_forwarded(context)
        backoff = 0.01
        attempt = 0
        while (left := deadline - loop.time()) > 0:
            attempt += 1
            if attempt > 1 and self.locate(key).range_id != shard:
                return _MOVED
            hosted = self._hosts(shard)
            # A follower of a known leader forwards at once: here it would only be refused.
            hint = self._runtime.follows(shard) if hosted else None
            if hosted and hint is None:
                try:
                    # A timeout scope, not wait_for: no extra task per request.
                    async with asyncio.timeout(left):
                        return await local()
                except NotLeaderError as exc:
                    hint = exc.leader_hint
                except ProposalDroppedError:
                    continue  # same request id: the session table keeps it exactly-once
                except (CommandTooLargeError, OverloadedError) as exc:
                    await context.abort(shown_status(exc), str(exc))
                except TimeoutError:
                    break
            elif not hosted:
                # Not hosted here: try the shard's replicas in turn; whichever leads serves,
                # the others answer UNAVAILABLE (a forwarded request is never forwarded again).
                hint = d.replicas[attempt % len(d.replicas)]
            if hint is not None and hint != self._runtime.node_id and not forwarded:
                try:
                    return await forward(hint, max(min(left, FORWARD_ATTEMPT_S_MAX), 0.001))
                except grpc.aio.AioRpcError as err:
                    moved = range_changed.range_of(err)
                    if moved is not None:
                        self._ranges.update([_descriptor_of(moved)])
                        return _MOVED  # the leader knows the key's range anew: route again
                    if err.code() not in (
                        grpc.StatusCode.UNAVAILABLE,
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                    ):
                        await context.abort(
                            err.code(), err.details() or "", trailing_metadata=_passed_on(err)
                        )
            if forwarded and (hint is None or hint != self._runtime.node_id):
                break  # let the first node retry; never forward twice
            await asyncio.sleep(backoff)
            # Capped low: a shard without a leader (an election, a move's new configuration)
            # is usually led again within a few ticks, and a request that slept past that
            # holds its client back (a move's dip in the load, issue 21).
            backoff = min(backoff * 2, 0.05)
        unavailable = f"shard {shard}: no reachable leader before the deadline"
        return await context.abort(
            grpc.StatusCode.UNAVAILABLE,
            unavailable + "; the write's outcome is unknown: retry it with the same request id"
            if write
            else unavailable + "; nothing was read: retry",
        )

    async def _scan_shard(
        self,
        d: RangeDescriptor,
        start: bytes,
        end: bytes,
        *,
        limit: int,
        consistency: int,
        max_staleness_ms: int,
        revision: int,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> kv_pb2.ScanResponse | None:
        """``[start, end)`` of range ``d`` (at ``revision`` of it, 0: now); None if it moved
        before it was read here."""
        shard = d.range_id
        sub = kv_pb2.ScanRequest(
            start=start,
            end=end,
            limit=limit,
            consistency=consistency,  # type: ignore[arg-type]
            max_staleness_ms=max_staleness_ms,
            revision=revision,
        )
        local, bound = self._stale_read_here(shard, consistency, max_staleness_ms)
        if revision and self._hosts(shard):
            try:
                # History at a revision this replica applied is final (as in ``Get``).
                return self._scan_here(shard, start, end, limit, revision, 0.0)
            except FutureRevisionError:
                local = False
        if not local:
            outcome = await self._at_leader(
                d, start, context, lambda n, t: self._forward_scan(n, sub, t)
            )
            if outcome is _MOVED:
                return None
            if isinstance(outcome, kv_pb2.ScanResponse):
                return outcome
            bound = 0.0
        return self._scan_here(shard, start, end, limit, revision, bound)

    def _scan_here(  # noqa: PLR0917 - the sub-scan's own arguments
        self,
        shard: int,
        start: bytes,
        end: bytes,
        limit: int,
        revision: int,
        bound: float | None,
    ) -> kv_pb2.ScanResponse:
        """``[start, end)`` of this node's replica of ``shard`` (at ``revision``, 0: now)."""
        with self._runtime.read_state_machine(shard) as sm:
            held = sm.descriptor
            if held is not None and (sm.frozen_slot or not _covers(held, start, end)):
                raise RangeMovedError(shard, held)
            if revision:
                kvs, more = sm.scan_at(
                    start, end, revision, limit, bytes_max=SCAN_RESPONSE_BYTES_MAX
                )
            else:
                kvs, more = sm.scan(start, end, limit, bytes_max=SCAN_RESPONSE_BYTES_MAX)
            answered_at = sm.revision
        return kv_pb2.ScanResponse(
            kvs=[_kv(kv) for kv in kvs],
            more=more,
            header=self.header(shard, answered_at, bound),
        )

    def _forward_scan(
        self, node: int, request: kv_pb2.ScanRequest, timeout: float
    ) -> Awaitable[kv_pb2.ScanResponse]:
        return across_wan(
            self._forward_delay_s.get(node, 0.0),
            lambda: self._stub(node).Scan(request, timeout=timeout, metadata=(FORWARDED,)),
        )

    # ------------------------------------------------------------------ helpers

    def _hosts(self, shard: int) -> bool:
        return self._runtime.hosts(shard)

    async def _refuse_if_stale(
        self,
        routed: kv_pb2.RangeVersion,
        d: RangeDescriptor,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        """The caller routed by an older view of the key's range than this node's: refuse
        with the range as this node knows it (nothing done; retry there, same request id)."""
        if not range_changed.stale(routed, d.range_id, d.generation):
            return
        info = kv_pb2.RangeInfo(
            shard_id=d.range_id,
            start=d.start,
            end=d.end,
            replicas=list(d.replicas),
            generation=d.generation,
            leader_node_id=(self._runtime.leader_hint(d.range_id) or 0)
            if self._hosts(d.range_id)
            else 0,
        )
        await context.abort(
            range_changed.CODE,
            f"routed by shard {routed.shard_id} generation {routed.generation}, but the key is"
            f" in shard {d.range_id} generation {d.generation} now: retry there with the same"
            " request id",
            trailing_metadata=range_changed.trailer(info),
        )

    def _map(self) -> RangeMap:
        """The range map, with this node's hosted descriptors as of now and the meta range's
        directory as this node's replica of it applied it (where two overlap, the newer)."""
        runtime = self._runtime
        version = runtime.layout_version
        if version != self._layout_seen:
            self._layout_seen = version
            self._ranges.update(runtime.directory() or ())
            self._ranges.update(runtime.descriptors())
        return self._ranges

    def locate(self, key: bytes) -> RangeDescriptor:
        d = self._map().lookup(key)
        assert d is not None, key  # the first layout covers every key, and is never dropped
        return d

    def _forward(self, node: int, kind: str, request: Any, timeout: float) -> Awaitable[Any]:
        """Forward to ``node``, batched with every other request forwarded there this turn."""
        batcher = self._batchers.get(node)
        if batcher is None:
            batcher = self._batchers[node] = Batcher(
                self._stub(node),
                metadata=(FORWARDED,),
                one_way_delay_s=self._forward_delay_s.get(node, 0.0),
            )
        return batcher.submit(kind, request, timeout)

    def _stub(self, node: int) -> kv_pb2_grpc.KVStub:
        return kv_pb2_grpc.KVStub(self.channel(node))

    def _stale_read_here(
        self, shard: int, consistency: int, max_staleness_ms: int
    ) -> tuple[bool, float | None]:
        """Whether this node serves the read from its own replica (a stale read it is fresh
        enough for), and the bound to report: the one it proved, for a bounded read; None
        (reported as -1, "no bound") for a plain stale read, which asked for none (the
        README's and the proto's contract), so none is claimed."""
        if consistency != kv_pb2.CONSISTENCY_STALE or not self._hosts(shard):
            return False, None
        if not max_staleness_ms:
            return True, None
        bound = self._runtime.stale_read_bound_ms(shard)
        return bound is not None and bound <= max_staleness_ms, bound

    def _get_local(
        self, shard: int, key: bytes, bound_ms: float | None, at_revision: int = 0
    ) -> kv_pb2.GetResponse:
        kv, revision = self._runtime.get_local(shard, key, at_revision)
        response = kv_pb2.GetResponse(
            found=kv is not None, header=self.header(shard, revision, bound_ms)
        )
        if kv is not None:
            response.kv.CopyFrom(_kv(kv))
        return response

    def header(
        self, shard: int, revision: int | None, staleness_ms: float | None = 0.0
    ) -> kv_pb2.ResponseHeader:
        """``staleness_ms``: the bound to report (0: linearizable or a write; None: unknown)."""
        runtime = self._runtime
        hosted = runtime.hosts(shard)
        return kv_pb2.ResponseHeader(
            shard_id=shard,
            revision=revision
            if revision is not None
            else (runtime.revision(shard) if hosted else 0),
            leader_node_id=(runtime.leader_hint(shard) or 0) if hosted else 0,
            served_by_node_id=runtime.node_id,
            served_by_dc=self._dc,
            applied_slot=runtime.applied_slot(shard) if hosted else 0,
            staleness_bound_ms=-1 if staleness_ms is None else math.ceil(staleness_ms),
            generation=d.generation if (d := self._ranges.get(shard)) is not None else 0,
        )

    def _response_op(
        self, shard: int, result: PutResult | DeleteResult | GetResult
    ) -> kv_pb2.ResponseOp:
        if isinstance(result, PutResult):
            return kv_pb2.ResponseOp(
                put=kv_pb2.PutResponse(header=self.header(shard, result.revision))
            )
        if isinstance(result, DeleteResult):
            return kv_pb2.ResponseOp(
                delete=kv_pb2.DeleteResponse(
                    deleted=result.deleted, header=self.header(shard, result.revision)
                )
            )
        get = kv_pb2.GetResponse(found=result.kv is not None)
        if result.kv is not None:
            get.kv.CopyFrom(_kv(result.kv))
        return kv_pb2.ResponseOp(get=get)

    async def _check_writable(
        self, keys: list[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        """Topic descriptions and partition logs are the Streams service's to write,
        counters the Counters service's (a put could move a counter back), and operator
        state the Admin service's."""
        for key in keys:
            if key.startswith((TOPICS, PARTITIONS)):
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"{key!r}: keys under {TOPICS!r} and {PARTITIONS!r} are written only"
                    " through the Streams service",
                )
            if key.startswith(COUNTERS):
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"{key!r}: keys under {COUNTERS!r} are counters, moved only by Counters.Take",
                )
            if key.startswith(OPERATOR):
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"{key!r}: keys under {OPERATOR!r} are operator state, written only through"
                    " the Admin service (kvstore node drain, node undrain, node rebalance --auto)",
                )

    async def _check_key(self, key: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        if not key:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "key must not be empty")
        if len(key) > self._limits.key_bytes_max:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"key over {self._limits.key_bytes_max} bytes"
            )

    async def expect(
        self, result: Any, kind: type[R], context: grpc.aio.ServicerContext[Any, Any]
    ) -> R:
        refused = status_of_result(result)
        if refused is not None:
            await context.abort(*refused)
        if not isinstance(result, kind):
            await context.abort(grpc.StatusCode.INTERNAL, f"unexpected result {result!r}")
        return result


class _ItemAbortedError(Exception):
    def __init__(
        self, code: grpc.StatusCode, details: str, trailers: tuple[tuple[str, Any], ...] = ()
    ) -> None:
        super().__init__(details)
        self.code = code
        self.details = details
        self.trailers = trailers


class _ItemContext:
    """What a unary handler uses of its context, for one item of a batch: aborting fails the
    item alone; the deadline is the item's own, within the call's."""

    def __init__(self, call: grpc.aio.ServicerContext[Any, Any], item: kv_pb2.BatchItem) -> None:
        self._call = call
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._deadline = loop.time() + item.timeout_ms / 1000 if item.timeout_ms else None

    def time_remaining(self) -> float | None:
        remaining = self._call.time_remaining()
        if self._deadline is None:
            return remaining
        own = self._deadline - self._loop.time()
        return own if remaining is None else min(own, remaining)

    def invocation_metadata(self) -> Any:
        return self._call.invocation_metadata()

    async def abort(
        self,
        code: grpc.StatusCode,
        details: str = "",
        trailing_metadata: tuple[tuple[str, Any], ...] = (),
    ) -> NoReturn:
        raise _ItemAbortedError(code, details, trailing_metadata)


class _Parts:
    """Items of ``partial_answers`` batches, answered as they finish: whatever finished in one
    loop turn leaves as one ``BatchResponse`` per batch (the writes of one Paxos slot finish
    together, a read on its own); a batch's last item leaves at once."""

    def __init__(self, answers: asyncio.Queue[kv_pb2.BatchResponse | None]) -> None:
        self._answers = answers
        self._open: dict[int, int] = {}  # batch id -> items not yet finished
        self._ready: dict[int, tuple[list[int], list[kv_pb2.BatchResult]]] = {}
        self._flush_scheduled = False

    def expect(self, batch_id: int, items: int) -> None:
        # Added, not set: a client that reuses an id gets its items answered, under that id.
        self._open[batch_id] = self._open.get(batch_id, 0) + items

    def done(self, batch_id: int, index: int, task: asyncio.Task[kv_pb2.BatchResult]) -> None:
        if task.cancelled():
            return  # the stream is ending
        error = task.exception()
        result = (
            task.result()
            if error is None
            else _item_error(grpc.StatusCode.UNKNOWN, f"unexpected error: {error!r}")
        )
        indexes, results = self._ready.setdefault(batch_id, ([], []))
        indexes.append(index)
        results.append(result)
        self._open[batch_id] -= 1
        if not self._open[batch_id]:
            del self._open[batch_id]
            self._send(batch_id)
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        for batch_id in list(self._ready):
            self._send(batch_id)

    def _send(self, batch_id: int) -> None:
        indexes, results = self._ready.pop(batch_id)
        self._answers.put_nowait(
            kv_pb2.BatchResponse(id=batch_id, item_indexes=indexes, results=results)
        )


_HANDLERS = {"get": "Get", "put": "Put", "delete": "Delete", "txn": "Txn"}


def _consume(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


def is_forwarded(context: grpc.aio.ServicerContext[Any, Any]) -> bool:
    """The request came from another node (``FORWARDED``): it must not be forwarded again."""
    return any(k == FORWARDED[0] for k, _ in context.invocation_metadata() or ())


def _item_error(code: grpc.StatusCode, details: str) -> kv_pb2.BatchResult:
    return kv_pb2.BatchResult(error=kv_pb2.ItemStatus(code=code.value[0], message=details))


class _Moved:
    """A request's key left the range it was routed to: route it again."""


_MOVED = _Moved()


class _Reroutes:
    """Attempts at a key whose range moved (a split, or a merge: its right range refuses
    everything from its freeze until its left neighbour took it over): at most
    ``REROUTES_MAX``, each after a pause that doubles from 5 ms to 200 ms (about 2.5 s in
    all), so a merge in progress is waited out rather than hammered."""

    def __init__(self) -> None:
        self._attempts = 0
        self._pause_s = 0.005

    async def again(self) -> bool:
        if self._attempts >= REROUTES_MAX:
            return False
        if self._attempts:
            await asyncio.sleep(self._pause_s)
            self._pause_s = min(self._pause_s * 2, 0.2)
        self._attempts += 1
        return True


async def _moving(context: grpc.aio.ServicerContext[Any, Any], *, write: bool) -> NoReturn:
    await context.abort(
        grpc.StatusCode.UNAVAILABLE,
        "the key's range kept moving (splits or merges); "
        + (
            "the write's outcome is unknown: retry it with the same request id"
            if write
            else "retry"
        ),
    )


def _covers(d: RangeDescriptor, start: bytes, end: bytes) -> bool:
    """Whether range ``d`` holds all of ``[start, end)``."""
    if not d.contains(start):
        return False
    return d.end == b"" or (end != b"" and end <= d.end)


def _routed_by(request: Any) -> kv_pb2.RangeVersion | None:
    """The range the caller routed ``request`` by, if it named one (a copy: the request's
    own field is restamped with this node's choice before each forward)."""
    if not request.HasField("routed_by"):
        return None
    routed = kv_pb2.RangeVersion()
    routed.CopyFrom(request.routed_by)
    return routed


def _stamp(request: Any, d: RangeDescriptor) -> None:
    request.routed_by.shard_id = d.range_id
    request.routed_by.generation = d.generation


def _descriptor_of(info: kv_pb2.RangeInfo) -> RangeDescriptor:
    return RangeDescriptor(
        info.shard_id, info.start, info.end, tuple(info.replicas), info.generation
    )


def request_id_of(pb: kv_pb2.RequestId) -> RequestId:
    return RequestId(pb.client_id, pb.seq)


async def forwarded_command(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Command:
    """The command another node sent in an ``Apply`` (``request.command``): refused with
    PERMISSION_DENIED from a client, INVALID_ARGUMENT if it does not decode."""
    if not is_forwarded(context):
        await context.abort(
            grpc.StatusCode.PERMISSION_DENIED,
            "Apply is sent by nodes (a shard's leader is asked), not by clients",
        )
    try:
        return decode_command(request.command)
    except CodecError as exc:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed command: {exc}")


async def never_forwarded(_node: int, _timeout: float) -> NoReturn:
    """The ``forward`` of a request another node forwarded here: never forwarded again."""
    raise AssertionError("a forwarded request is never forwarded again")


def _passed_on(err: grpc.aio.AioRpcError) -> tuple[tuple[str, str], ...]:
    """The trailers of a forwarded call's refusal that its caller needs too."""
    return tuple(
        (key, value)
        for key, value in err.trailing_metadata() or ()
        if key == COMPACTED_TRAILER and isinstance(value, str)
    )


async def _refuse_history(
    context: grpc.aio.ServicerContext[Any, Any], refused: HistoryError
) -> NoReturn:
    """A read at a revision the shard cannot answer at: OUT_OF_RANGE, naming the compacted
    revision in a trailer when that is why."""
    code, trailers = history_refusal(refused)
    await context.abort(code, str(refused), trailing_metadata=trailers)
    raise AssertionError("abort returned")


def _kv(kv: KeyValue) -> kv_pb2.KeyValue:
    return kv_pb2.KeyValue(
        key=kv.key,
        value=kv.value,
        create_revision=kv.create_revision,
        mod_revision=kv.mod_revision,
        version=kv.version,
    )


def _compare(c: kv_pb2.Compare) -> Compare:
    return Compare(c.key, Target(c.target), CompareOp(c.op), c.value, c.number)


def _op(op: kv_pb2.RequestOp) -> TxnOp:
    which = op.WhichOneof("request")
    if which == "put":
        return TxnOp(OpKind.PUT, op.put.key, op.put.value, op.put.lease)
    if which == "delete":
        return TxnOp(OpKind.DELETE, op.delete.key)
    return TxnOp(OpKind.GET, op.get.key)


def _op_key(op: kv_pb2.RequestOp) -> bytes:
    which = op.WhichOneof("request")
    if which == "put":
        return op.put.key
    if which == "delete":
        return op.delete.key
    return op.get.key
