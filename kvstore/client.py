"""kvstore's Python client: ``AsyncClient`` (asyncio) and ``Client`` (blocking).

- It keeps the shard map (``Admin.DescribeCluster``) and the leader of every shard, sends
  each request straight to that shard's leader, learns leaders from response headers, and
  refreshes the map when a node is unreachable. Any node would forward a misdirected
  request, so a stale cache costs one hop, never a wrong answer.
- Every write carries a ``RequestId(client_id, seq)``; a retry reuses it, so it applies once.
  The server keeps one session per client id and refuses a seq older than the latest it
  applied, so concurrent writes never share a client id: each call takes a *lane* (a client
  id of its own, one request at a time) and gives it back when it ends.
- Concurrent calls to one node travel together: one message per event-loop turn on a
  long-lived ``KV.BatchStream`` call (``kvstore.batcher``), not one gRPC call per operation.
- A client that knows its datacenter (``dc=``, default ``KVSTORE_DC``) uses a gateway there:
  requests go to that datacenter's replica of the shard (any node there, if it has none),
  which forwards writes and linearizable reads to the leader over the WAN once, and serves
  bounded-staleness reads (``max_staleness_ms``) itself when it can prove it is fresh
  enough. Other nodes are the fallback when the local ones do not answer.
- Every call has one deadline covering all its retries. A write that hits the deadline has an
  unknown outcome (``KvError`` with ``DEADLINE_EXCEEDED``): retrying it is safe only through
  the same client call, which this library does for you until the deadline.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import math
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from typing import Any, TypeVar, overload

import grpc

from cluster.counter_keys import counter_key
from cluster.keys import prefix_end
from kvstore import concurrency, range_changed, watching
from kvstore.batcher import Batcher
from kvstore.channels import CHANNEL_OPTIONS
from kvstore.concurrency import Election, FencingToken
from kvstore.leasing import Lease, LeaseCalls, LeaseContext
from kvstore.request_ids import new_client_id
from kvstore.streams.client import StreamCalls
from kvstore.txn import Txn, TxnResult
from kvstore.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    counters_pb2,
    counters_pb2_grpc,
    kv_pb2,
    kv_pb2_grpc,
)
from kvstore.watching import WatchCompactedError, WatchEvent

__all__ = [
    "AsyncClient",
    "Client",
    "KvError",
    "WatchCompactedError",
    "WatchEvent",
    "new_client_id",
]

T = TypeVar("T")
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
ATTEMPT_S_MAX = 3.0


class KvError(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


def _key(key: bytes | str) -> bytes:
    return key.encode() if isinstance(key, str) else key


def _check_timeout(timeout_s: float) -> None:
    # Every call's deadline is now + timeout_s: zero or less fails every call unsent, and an
    # infinite or NaN one would retry forever.
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float):
        raise TypeError(f"timeout_s must be a number of seconds, not {timeout_s!r}")
    if not (timeout_s > 0 and math.isfinite(timeout_s)):
        raise ValueError(f"timeout_s must be a positive, finite number of seconds, not {timeout_s}")


class _Lanes:
    """Client ids for concurrent writes: each in use by one call at a time, seq rising.

    A lane whose call failed with an unknown outcome is reused: its next seq makes the old
    request stale, so the old one either applied before or never will.
    """

    def __init__(self, first_client_id: int) -> None:
        self._free: list[list[int]] = [[first_client_id, 0]]

    @contextlib.contextmanager
    def take(self) -> Iterator[kv_pb2.RequestId]:
        lane = self._free.pop() if self._free else [new_client_id(), 0]
        lane[1] += 1
        try:
            yield kv_pb2.RequestId(client_id=lane[0], seq=lane[1])
        finally:
            self._free.append(lane)


class AsyncClient:
    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        timeout_s: float = 10.0,
        client_id: int | None = None,
        dc: str | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one endpoint is needed")
        _check_timeout(timeout_s)
        self._endpoints = list(endpoints)
        self.dc = dc if dc is not None else os.environ.get("KVSTORE_DC") or None
        self._dc_of: dict[int, str] = {}
        self._timeout_s = timeout_s
        self.client_id = client_id or new_client_id()
        self._lanes = _Lanes(self.client_id)
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._starts: list[bytes] = []
        self._shards: list[admin_pb2.ShardInfo] = []
        self._shard_ids: set[int] = {0}
        self._generations: dict[int, int] = {}
        self._addresses: dict[int, str] = {}
        self._leaders: dict[int, int] = {}
        self._batchers: dict[str, Batcher] = {}
        # The Lease service (any endpoint forwards to the meta range's leader).
        self.leases = LeaseCalls(self._channel, self._endpoints, timeout_s, KvError)
        # The Streams service (topics, produce, fetch: ``kvstore.streams.client``).
        self.streams = StreamCalls(self._channel, self._endpoints, timeout_s, KvError)

    def lease(self, ttl_s: float) -> LeaseContext:
        """``async with client.lease(ttl_s) as lease``: a lease granted on entry, kept alive
        meanwhile (``lease.lost`` is set if that fails), revoked on exit, its keys with it."""
        ttl_ms = round(ttl_s * 1000)
        if ttl_ms <= 0:
            raise ValueError(f"a lease's TTL is positive, not {ttl_s}")
        return LeaseContext(self.leases, ttl_ms)

    def lock(
        self, name: bytes | str, *, ttl_s: float = concurrency.DEFAULT_TTL_S
    ) -> contextlib.AbstractAsyncContextManager[FencingToken]:
        """``async with client.lock(name) as token``: held inside the block, released on
        exit; ``token`` is the fencing token (see ``kvstore.concurrency``)."""
        return concurrency.lock(self, name, ttl_s=ttl_s)

    def election(self, name: bytes | str, *, ttl_s: float = concurrency.DEFAULT_TTL_S) -> Election:
        return Election(self, name, ttl_s=ttl_s)

    def _channel(self, address: str) -> grpc.aio.Channel:
        self._stub(address)  # opens it
        return self._channels[address]

    async def close(self) -> None:
        for batcher in self._batchers.values():
            batcher.close()
        self._batchers.clear()
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ the API

    async def put(
        self, key: bytes | str, value: bytes | str, *, prev_kv: bool = False, lease: int = 0
    ) -> kv_pb2.PutResponse:
        """``lease``: attach the key to this lease (``lease()``, ``leases.grant``): the key
        is deleted when the lease ends."""
        with self._lanes.take() as request_id:
            request = kv_pb2.PutRequest(
                key=_key(key),
                value=_key(value),
                prev_kv=prev_kv,
                request_id=request_id,
                lease=lease,
            )
            response: kv_pb2.PutResponse = await self._call(
                request.key,
                lambda a, t: self._batch(a, "put", request, t),
                write=True,
                routed=request,
            )
        return response

    async def get(
        self,
        key: bytes | str,
        *,
        stale: bool = False,
        max_staleness_ms: int = 0,
        revision: int = 0,
    ) -> kv_pb2.KeyValue | None:
        """Linearizable by default; ``stale`` reads the nearest replica (any age), and
        ``max_staleness_ms`` one that can prove it misses no write older than that.
        ``revision``: the key as it was at that revision of its shard (OUT_OF_RANGE below
        the compacted one: ``kvstore.compacted.compacted_of`` reads it from the error)."""
        response = await self.get_response(
            key, stale=stale, max_staleness_ms=max_staleness_ms, revision=revision
        )
        return response.kv if response.found else None

    async def get_response(
        self,
        key: bytes | str,
        *,
        stale: bool = False,
        max_staleness_ms: int = 0,
        revision: int = 0,
    ) -> kv_pb2.GetResponse:
        """As ``get``, with the header: who served it, from which DC, and how stale."""
        consistency = (
            kv_pb2.CONSISTENCY_STALE
            if stale or max_staleness_ms
            else kv_pb2.CONSISTENCY_LINEARIZABLE
        )
        request = kv_pb2.GetRequest(
            key=_key(key),
            consistency=consistency,
            max_staleness_ms=max_staleness_ms,
            revision=revision,
        )
        response: kv_pb2.GetResponse = await self._call(
            request.key,
            lambda a, t: self._batch(a, "get", request, t),
            write=False,
            routed=request,
        )
        return response

    async def delete(self, key: bytes | str) -> bool:
        with self._lanes.take() as request_id:
            request = kv_pb2.DeleteRequest(key=_key(key), request_id=request_id)
            response: kv_pb2.DeleteResponse = await self._call(
                request.key,
                lambda a, t: self._batch(a, "delete", request, t),
                write=True,
                routed=request,
            )
        return response.deleted

    async def take_range(self, name: str, count: int) -> tuple[int, int]:
        """``[start, end)``: ``count`` ids of counter ``name`` that no other take ever gets
        (``docs/counters.md``). Retried with one request id until the deadline: a take
        that ends in ``DEADLINE_EXCEEDED`` may have taken a range nobody will use."""
        with self._lanes.take() as request_id:
            request = counters_pb2.CounterTakeRequest(name=name, count=count, request_id=request_id)
            response: counters_pb2.CounterTakeResponse = await self._call(
                counter_key(name.encode()),
                lambda a, t: self._counters(a).Take(request, timeout=t),
                write=True,
                routed=request,
            )
        return response.start, response.end

    async def counter(self, name: str) -> int:
        """Counter ``name``'s next id (0 if nothing was taken from it), read linearizably."""
        request = counters_pb2.CounterGetRequest(name=name)
        response: counters_pb2.CounterGetResponse = await self._call(
            counter_key(name.encode()),
            lambda a, t: self._counters(a).Get(request, timeout=t),
            write=False,
        )
        return response.value

    async def scan(
        self, start: bytes | str = b"", end: bytes | str = b"", limit: int = 0, revision: int = 0
    ) -> tuple[list[kv_pb2.KeyValue], bool]:
        """``revision``: each shard as it was at that revision of its own."""
        request = kv_pb2.ScanRequest(
            start=_key(start), end=_key(end), limit=limit, revision=revision
        )
        response: kv_pb2.ScanResponse = await self._call(
            request.start, lambda a, t: self._stub(a).Scan(request, timeout=t), write=False
        )
        return list(response.kvs), response.more

    @overload
    def txn(self) -> Txn[Coroutine[Any, Any, TxnResult]]: ...
    @overload
    def txn(self, request: kv_pb2.TxnRequest) -> Coroutine[Any, Any, kv_pb2.TxnResponse]: ...
    def txn(
        self, request: kv_pb2.TxnRequest | None = None
    ) -> Txn[Coroutine[Any, Any, TxnResult]] | Coroutine[Any, Any, kv_pb2.TxnResponse]:
        """``txn()``: a typed builder (``kvstore.txn``) whose ``commit()`` is awaited for a
        ``TxnResult``; ``txn(request)``: send that ``TxnRequest`` and await its response."""
        if request is None:
            return Txn(self._commit)
        return self._txn(request)

    async def _commit(self, request: kv_pb2.TxnRequest) -> TxnResult:
        return TxnResult.from_response(await self._txn(request))

    async def _txn(self, request: kv_pb2.TxnRequest) -> kv_pb2.TxnResponse:
        keys = [c.key for c in request.compare] + [
            getattr(op, op.WhichOneof("request") or "get").key
            for op in (*request.success, *request.failure)
        ]
        with self._lanes.take() as request_id:
            if not request.HasField("request_id"):
                request.request_id.CopyFrom(request_id)
            response: kv_pb2.TxnResponse = await self._call(
                keys[0] if keys else b"",
                lambda a, t: self._batch(a, "txn", request, t),
                write=True,
                routed=request,
            )
        return response

    def watch(
        self,
        prefix: bytes | str = b"",
        *,
        end: bytes | str | None = None,
        start: int | str | None = None,
        prev_kv: bool = False,
        on_progress: Callable[[str], None] | None = None,
    ) -> AsyncIterator[WatchEvent]:
        """Every change to the keys starting with ``prefix`` (or, with ``end``, in
        ``[prefix, end)``), once each, in revision order per shard, until the caller stops
        iterating. ``start``: a revision (each shard's changes from it on), a token (an
        event's ``token``: resume exactly after it), or None (from now). Served by a
        replica in the client's datacenter when it has one; resumes by itself on another
        node if that one fails (see ``kvstore.watching``)."""
        first = _key(prefix)
        last = prefix_end(first) if end is None else _key(end)
        create = kv_pb2.WatchCreateRequest(key=first, range_end=last or b"\x00", prev_kv=prev_kv)
        if isinstance(start, str):
            create.start_token = start
        elif start:
            create.start_revision = start
        return self._watch(create, on_progress)

    async def _watch(
        self, create: kv_pb2.WatchCreateRequest, on_progress: Callable[[str], None] | None
    ) -> AsyncIterator[WatchEvent]:
        if not self._shards:
            await self._refresh(time.monotonic() + self._timeout_s)
        events = watching.watch(
            self._stub,
            lambda: self._targets(self._shard_for(create.key)),
            create,
            resume_for_s=self._timeout_s,
            on_progress=on_progress,
            error=KvError,
        )
        async for event in events:
            yield event

    def leader_of(self, shard_id: int) -> int | None:
        """The leader this client believes the shard has (None: unknown)."""
        return self._leaders.get(shard_id)

    # ------------------------------------------------------------------ routing

    def _counters(self, address: str) -> counters_pb2_grpc.CountersStub:
        return counters_pb2_grpc.CountersStub(self._channel(address))

    def _stub(self, address: str) -> kv_pb2_grpc.KVStub:
        channel = self._channels.get(address)
        if channel is None:
            channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
            self._channels[address] = channel
        return kv_pb2_grpc.KVStub(channel)

    async def _refresh(self, deadline: float) -> None:
        for address in [*self._endpoints, *self._addresses.values()]:
            self._stub(address)  # opens the channel
            stub = admin_pb2_grpc.AdminStub(self._channels[address])
            try:
                view = await stub.DescribeCluster(
                    admin_pb2.DescribeClusterRequest(),
                    timeout=max(0.05, min(ATTEMPT_S_MAX, deadline - time.monotonic())),
                )
            except grpc.aio.AioRpcError:
                continue
            self._shards = sorted(view.shards, key=lambda s: s.start)
            self._starts = [s.start for s in self._shards]
            self._shard_ids = {0} | {s.shard_id for s in self._shards}
            self._generations = {s.shard_id: s.generation for s in self._shards}
            self._addresses = {n.node_id: n.address for n in view.nodes}
            self._dc_of = {n.node_id: n.dc for n in view.nodes}
            self._leaders = {s.shard_id: s.leader_node_id for s in view.shards if s.leader_node_id}
            return

    def _shard_for(self, key: bytes) -> admin_pb2.ShardInfo | None:
        if not self._shards:
            return None
        shard = self._shards[max(0, bisect.bisect_right(self._starts, key) - 1)]
        if shard.start <= key and (not shard.end or key < shard.end):
            return shard
        self._shards = []  # a gap (a range learned from a refusal): fetch the map again
        return None

    def _learn_range(self, info: kv_pb2.RangeInfo) -> None:
        """A node said the key's range is ``info`` now: it replaces what it overlaps."""

        def overlaps(s: admin_pb2.ShardInfo) -> bool:
            return (not info.end or s.start < info.end) and (not s.end or info.start < s.end)

        learned = admin_pb2.ShardInfo(
            shard_id=info.shard_id,
            start=info.start,
            end=info.end,
            replicas=info.replicas,
            generation=info.generation,
            leader_node_id=info.leader_node_id,
        )
        self._shards = sorted(
            [s for s in self._shards if not overlaps(s)] + [learned], key=lambda s: s.start
        )
        self._starts = [s.start for s in self._shards]
        self._shard_ids.add(info.shard_id)
        self._generations[info.shard_id] = info.generation
        if info.leader_node_id:
            self._leaders[info.shard_id] = info.leader_node_id

    def _targets(self, shard: admin_pb2.ShardInfo | None) -> list[str]:
        ordered: list[str] = []
        if self.dc is not None:
            # Our datacenter first: the shard's replica here, then any node here as gateway.
            local = [n for n, dc in self._dc_of.items() if dc == self.dc]
            if shard is not None:
                local.sort(key=lambda n: n not in shard.replicas)
            ordered += [self._addresses[n] for n in local if n in self._addresses]
        if shard is not None:
            leader = self._leaders.get(shard.shard_id)
            if leader in self._addresses:
                ordered.append(self._addresses[leader])
            ordered += [self._addresses[r] for r in shard.replicas if r in self._addresses]
        ordered += [*self._addresses.values(), *self._endpoints]
        return list(dict.fromkeys(ordered))

    def _batch(self, address: str, kind: str, request: Any, timeout: float) -> Awaitable[Any]:
        batcher = self._batchers.get(address)
        if batcher is None:
            batcher = self._batchers[address] = Batcher(self._stub(address))
        return batcher.submit(kind, request, timeout)

    async def _call(
        self,
        key: bytes,
        call: Callable[[str, float], Awaitable[T]],
        *,
        write: bool,
        routed: Any = None,
    ) -> T:
        """``call`` at the best target, retried until the deadline. ``write``: a failure
        must say that the outcome is unknown (an attempt may have applied it). ``routed``:
        the request, which names the range it is routed by (``routed_by``); a node that
        knows the range changed refuses it with the new range, learned here before the
        retry (the same request: the same request id)."""
        deadline = time.monotonic() + self._timeout_s
        backoff = 0.02
        last = "no node answered"
        while time.monotonic() < deadline:
            if not self._shards:
                await self._refresh(deadline)
            shard = self._shard_for(key)
            if routed is not None and shard is not None:
                routed.routed_by.shard_id = shard.shard_id
                routed.routed_by.generation = shard.generation
            moved = False
            for address in self._targets(shard):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    response = await call(address, min(left, ATTEMPT_S_MAX))
                except grpc.aio.AioRpcError as err:
                    info = range_changed.range_of(err)
                    if info is not None:
                        self._learn_range(info)
                        last = f"{address}: shard {info.shard_id} changed"
                        moved = True
                        break
                    if err.code() not in RETRYABLE:
                        raise KvError(err.code(), err.details() or "") from None
                    last = f"{address}: {err.code().name}"
                    if shard is not None:
                        self._leaders.pop(shard.shard_id, None)
                    continue
                self._learn(response)
                header = getattr(response, "header", None)
                if header is not None and (
                    header.shard_id not in self._shard_ids
                    or header.generation > self._generations.get(header.shard_id, 0)
                ):
                    self._shards = []  # a range the map lacks or has older: fetch it again
                return response
            if moved:
                continue  # route by what was learned, at once
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 0.5)
            self._shards = []  # the map may be stale: fetch it again
        unknown = "; the write's outcome is unknown" if write else ""
        raise KvError(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            f"no answer within {self._timeout_s}s ({last}){unknown}",
        )

    def _learn(self, response: Any) -> None:
        header = getattr(response, "header", None)
        if header is not None and header.leader_node_id:
            self._leaders[header.shard_id] = header.leader_node_id


class Client:
    """The blocking client: ``AsyncClient`` on its own event-loop thread."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        timeout_s: float = 10.0,
        client_id: int | None = None,
        dc: str | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one endpoint is needed")
        _check_timeout(timeout_s)  # before the thread: a refused client leaves nothing running
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="kvstore-client", daemon=True
        )
        self._thread.start()
        self._async = self._run(self._make(endpoints, timeout_s, client_id, dc))

    @staticmethod
    async def _make(
        endpoints: Sequence[str], timeout_s: float, client_id: int | None, dc: str | None
    ) -> AsyncClient:
        return AsyncClient(endpoints, timeout_s=timeout_s, client_id=client_id, dc=dc)

    def _run(self, coro: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()  # type: ignore[arg-type]

    def put(
        self, key: bytes | str, value: bytes | str, *, prev_kv: bool = False, lease: int = 0
    ) -> kv_pb2.PutResponse:
        return self._run(self._async.put(key, value, prev_kv=prev_kv, lease=lease))

    def lease(self, ttl_s: float) -> contextlib.AbstractContextManager[Lease]:
        """``with client.lease(ttl_s) as lease``: ``AsyncClient.lease``, blocking."""
        return _blocking_lease(self, ttl_s)

    @contextlib.contextmanager
    def lock(
        self, name: bytes | str, *, ttl_s: float = concurrency.DEFAULT_TTL_S
    ) -> Iterator[FencingToken]:
        """``with client.lock(name) as token``: ``AsyncClient.lock``, blocking."""
        context = self._async.lock(name, ttl_s=ttl_s)
        token = self._run(context.__aenter__())
        try:
            yield token
        finally:
            self._run(context.__aexit__(None, None, None))

    def lease_grant(self, ttl_s: float) -> int:
        return self._run(self._async.leases.grant(round(ttl_s * 1000)))

    def lease_revoke(self, lease_id: int) -> None:
        self._run(self._async.leases.revoke(lease_id))

    def lease_keep_alive(self, lease_id: int) -> int:
        """Once: the lease's TTL in ms, counted again from now."""
        return self._run(self._async.leases.keep_alive_once(lease_id))

    def lease_list(self) -> list[int]:
        return self._run(self._async.leases.list())

    def get(
        self,
        key: bytes | str,
        *,
        stale: bool = False,
        max_staleness_ms: int = 0,
        revision: int = 0,
    ) -> kv_pb2.KeyValue | None:
        return self._run(
            self._async.get(key, stale=stale, max_staleness_ms=max_staleness_ms, revision=revision)
        )

    def get_response(
        self,
        key: bytes | str,
        *,
        stale: bool = False,
        max_staleness_ms: int = 0,
        revision: int = 0,
    ) -> kv_pb2.GetResponse:
        return self._run(
            self._async.get_response(
                key, stale=stale, max_staleness_ms=max_staleness_ms, revision=revision
            )
        )

    def delete(self, key: bytes | str) -> bool:
        return self._run(self._async.delete(key))

    def take_range(self, name: str, count: int) -> tuple[int, int]:
        return self._run(self._async.take_range(name, count))

    def counter(self, name: str) -> int:
        return self._run(self._async.counter(name))

    def scan(
        self, start: bytes | str = b"", end: bytes | str = b"", limit: int = 0, revision: int = 0
    ) -> tuple[list[kv_pb2.KeyValue], bool]:
        return self._run(self._async.scan(start, end, limit, revision))

    @overload
    def txn(self) -> Txn[TxnResult]: ...
    @overload
    def txn(self, request: kv_pb2.TxnRequest) -> kv_pb2.TxnResponse: ...
    def txn(self, request: kv_pb2.TxnRequest | None = None) -> Txn[TxnResult] | kv_pb2.TxnResponse:
        """``txn()``: a typed builder whose ``commit()`` returns a ``TxnResult``;
        ``txn(request)``: send that ``TxnRequest`` and return its response."""
        if request is None:
            return Txn(lambda built: self._run(self._async._commit(built)))
        return self._run(self._async.txn(request))

    def watch(
        self,
        prefix: bytes | str = b"",
        *,
        end: bytes | str | None = None,
        start: int | str | None = None,
        prev_kv: bool = False,
    ) -> Iterator[WatchEvent]:
        """``AsyncClient.watch``, blocking: iterate it; leave the loop to stop watching."""
        events = self._async.watch(prefix, end=end, start=start, prev_kv=prev_kv)
        try:
            while True:
                try:
                    yield self._run(events.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            self._run(events.aclose())  # type: ignore[attr-defined]

    def close(self) -> None:
        self._run(self._async.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@contextlib.contextmanager
def _blocking_lease(client: Client, ttl_s: float) -> Iterator[Lease]:
    context = client._async.lease(ttl_s)
    lease = client._run(context.__aenter__())
    try:
        yield lease
    finally:
        client._run(context.__aexit__(None, None, None))
