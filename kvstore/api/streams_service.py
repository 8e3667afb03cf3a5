"""The Streams gRPC service: topics of partitions, produce and fetch, on the KV gateway.

Rules:
- A topic's description is the key ``t/<name>`` (``cluster.stream_keys``), created by a Txn
  "if absent", after its partitions' rows are made (an empty head each); then the rows are
  split apart into up to ``SPREAD_SHARDS`` shards, whose leader datacenters the placement
  rule spreads. The partition count never changes.
- Produce groups the records by partition (named, else by the CRC-32 of the key, else all
  keyless records of a call to one partition, round-robin over calls) and proposes one
  ``Append`` per partition through the KV gateway's routing (forwarded to the shard's
  leader as a one-partition Produce). With a producer id, each partition's append carries
  the request id ``(hash(producer, topic, partition), sequence)``: a retry appends once.
- Fetch reads the partition's head and records through the gateway's Get and Scan (from
  the leader, or a replica within ``max_staleness_ms``); with ``max_wait_ms`` and nothing
  new yet, it watches the partition on this node's replica (set before the read, so no
  append is missed) and reads again when the watch sees one, or when the wait ends (a node
  without a replica re-reads every ``_LONG_POLL_S``). Subscribe is fetches in a row.
- Clients write neither topic keys nor partition rows through KV (``kv_service``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import zlib
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
import structlog

from cluster.keys import KeySpan, prefix_end
from cluster.stream_keys import (
    PARTITIONS,
    PARTITIONS_MAX,
    TOPICS,
    partition_row,
    record_key,
    record_offset,
    topic_key,
    valid_name,
)
from kvstore.api.kv_service import FORWARDED, KvService, forwarded_command, never_forwarded
from kvstore.api.own_call import OwnCall, RefusedError
from kvstore.api.statuses import status_of_result
from kvstore.model import RequestId, encode_command
from kvstore.model.commands import (
    TRIM_ALL,
    Append,
    Appended,
    Compare,
    CompareOp,
    Invalid,
    OpKind,
    StreamRecord,
    Target,
    Trim,
    Trimmed,
    Txn,
    TxnOp,
    TxnResult,
    decode_forwarded_result,
    encode_forwarded_result,
)
from kvstore.model.streams import decode_head, decode_record
from kvstore.model.watch import WatchNotHostedError
from kvstore.runtime.watches import Watch, Watches
from kvstore.v1 import kv_pb2, streams_pb2, streams_pb2_grpc

RETENTION_CHECK_S = 5.0
SPREAD_SHARDS = 12  # a new topic's partitions start in this many shards at most
_CONCURRENT_PROPOSALS = 64
FETCH_RECORDS_DEFAULT = 1_000
FETCH_RECORDS_MAX = 10_000
_LONG_POLL_S = 0.02  # a waiting fetch re-reads this often where it cannot watch
SUBSCRIBE_WAIT_MS = 1_000
_TOPIC_CACHE_S = 5.0
_NO_ID = RequestId(0, 0)
R = TypeVar("R")


class StreamsService(streams_pb2_grpc.StreamsServicer):
    def __init__(
        self,
        kv: KvService,
        split_at: Callable[[int, bytes], Awaitable[bool]],
        watches: Watches | None = None,
    ) -> None:
        self._kv = kv
        self._watches = watches  # the node's: a waiting fetch is woken by a record's apply
        self._split_at = split_at  # the admin service's: a shard split at a key
        # Descriptions seen, and when: one is read again after ``_TOPIC_CACHE_S`` (a topic
        # deleted and made again elsewhere is seen by then; an append to a partition it
        # no longer has is refused meanwhile).
        self._topics: dict[str, tuple[streams_pb2.TopicConfig, float]] = {}
        self._round_robin = 0
        self._retention: asyncio.Task[None] | None = None
        self._log = structlog.get_logger("kvstore.streams").bind(node=kv.node_id)

    # ------------------------------------------------------------------ topics

    async def CreateTopic(  # noqa: N802
        self,
        request: streams_pb2.CreateTopicRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> streams_pb2.CreateTopicResponse:
        topic = request.topic
        await self._check_name(topic.name, context)
        if not 1 <= topic.partitions <= PARTITIONS_MAX:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"a topic has 1..{PARTITIONS_MAX} partitions"
            )
        key = topic_key(topic.name.encode())
        if (await self._kv.Get(kv_pb2.GetRequest(key=key), context)).found:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, f"topic {topic.name} exists")
        # The partitions first, then the topic that names them: a topic is never seen
        # without its partitions (a creator that dies half-way leaves empty heads, which a
        # later create of the name takes over).
        name = key[len(TOPICS) :]
        rows = [partition_row(name, p) for p in range(topic.partitions)]
        await self._each(
            rows, lambda row: self._propose(row, Append(_NO_ID, row, (), 0), Appended, context)
        )
        created = Txn(
            _NO_ID,
            (Compare(key, Target.CREATE_REVISION, CompareOp.EQUAL, number=0),),
            (TxnOp(OpKind.PUT, key, topic.SerializeToString()),),
            (),
        )
        result = await self._propose(key, created, TxnResult, context)
        if not result.succeeded:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, f"topic {topic.name} exists")
        # The partitions spread over up to ``SPREAD_SHARDS`` shards (consecutive ones share
        # a shard), so their leaders spread over datacenters (best effort: a refused split,
        # say during a merge, leaves more in one shard). From the last: the shard split
        # keeps its id for the left part, where the rest still are, so this node's view of
        # the layout is never stale for the next one.
        shards = min(topic.partitions, SPREAD_SHARDS)
        for first in reversed([topic.partitions * i // shards for i in range(1, shards)]):
            row = rows[first]
            shard = self._kv.locate(row)
            if shard.start != row:
                await self._split_at(shard.range_id, row)
        self._remember(topic)
        return streams_pb2.CreateTopicResponse(topic=topic)

    async def DeleteTopic(  # noqa: N802
        self,
        request: streams_pb2.DeleteTopicRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> streams_pb2.DeleteTopicResponse:
        topic = await self._topic(request.name, context)
        name = topic.name.encode()
        rows = [partition_row(name, p) for p in range(topic.partitions)]
        trimmed = await self._each(
            rows, lambda row: self._propose(row, Trim(_NO_ID, row, TRIM_ALL), Trimmed, context)
        )
        deleted = sum(t.deleted for t in trimmed)
        key = topic_key(name)
        gone = Txn(_NO_ID, (), (TxnOp(OpKind.DELETE, key),), ())
        await self._propose(key, gone, TxnResult, context)
        self._topics.pop(topic.name, None)
        return streams_pb2.DeleteTopicResponse(records_deleted=deleted)

    async def ListTopics(  # noqa: N802
        self,
        request: streams_pb2.ListTopicsRequest,  # noqa: ARG002 (nothing to ask)
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> streams_pb2.ListTopicsResponse:
        response = streams_pb2.ListTopicsResponse()
        start = TOPICS
        while True:
            scan = kv_pb2.ScanRequest(start=start, end=_after(TOPICS), limit=1000)
            part = await self._kv.Scan(scan, context)
            for kv in part.kvs:
                response.topics.add().ParseFromString(kv.value)
            if not part.more or not part.kvs:
                return response
            start = part.kvs[-1].key + b"\x00"

    async def DescribeTopic(  # noqa: N802
        self,
        request: streams_pb2.DescribeTopicRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> streams_pb2.DescribeTopicResponse:
        topic = await self._topic(request.name, context, fresh=True)
        response = streams_pb2.DescribeTopicResponse(topic=topic)
        for p in range(topic.partitions):
            row = partition_row(topic.name.encode(), p)
            got = await self._kv.Get(kv_pb2.GetRequest(key=row), context)
            head = decode_head(got.kv.value if got.found else None)
            shard = got.header.shard_id
            leader = self._kv.leader_of(shard)
            response.partitions.add(
                partition=p,
                shard_id=shard,
                leader_node_id=leader or 0,
                leader_dc=self._kv.dc_of(leader) if leader else "",
                first_offset=head.first,
                next_offset=head.next,
                retained_bytes=head.retained_bytes,
            )
        return response

    # ------------------------------------------------------------------ produce

    async def Produce(  # noqa: N802
        self,
        request: streams_pb2.ProduceRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> streams_pb2.ProduceResponse:
        topic = await self._topic(request.topic, context)
        limits = self._kv.limits
        size = 0
        by_partition: dict[int, list[StreamRecord]] = defaultdict(list)
        keyless = self._round_robin % topic.partitions
        for record in request.records:
            if len(record.key) > limits.key_bytes_max:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, f"key over {limits.key_bytes_max} bytes"
                )
            size += len(record.key) + len(record.value)
            size += sum(len(h.name) + len(h.value) for h in record.headers)
            if record.HasField("partition"):
                p = record.partition
                if p >= topic.partitions:
                    await context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"topic {topic.name} has partitions 0..{topic.partitions - 1}",
                    )
            else:
                p = zlib.crc32(record.key) % topic.partitions if record.key else keyless
            headers = tuple((h.name, h.value) for h in record.headers)
            by_partition[p].append(StreamRecord(record.key, record.value, headers))
        if size > limits.value_bytes_max:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"a produce's records together are over {limits.value_bytes_max} bytes",
            )
        self._round_robin += 1
        appends = [
            self._append(request, topic, p, records, context)
            for p, records in sorted(by_partition.items())
        ]
        response = streams_pb2.ProduceResponse()
        for appended in await asyncio.gather(*appends):
            response.appended.append(appended)
        return response

    async def _append(
        self,
        request: streams_pb2.ProduceRequest,
        topic: streams_pb2.TopicConfig,
        partition: int,
        records: list[StreamRecord],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> streams_pb2.PartitionAppend:
        row = partition_row(topic.name.encode(), partition)
        request_id = _NO_ID
        if request.producer_id:
            request_id = RequestId(
                _producer_client(request.producer_id, topic.name, partition), request.sequence
            )
        command = Append(request_id, row, tuple(records), int(time.time() * 1000))
        result = await self._propose(row, command, Appended, context)
        return streams_pb2.PartitionAppend(
            partition=partition, first_offset=result.first_offset, count=result.count
        )

    async def Apply(  # noqa: N802
        self, request: streams_pb2.ApplyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> streams_pb2.ApplyResponse:
        """Node to node: a command another node routed to this one, believed to lead."""
        command = await forwarded_command(request, context)
        if not isinstance(command, Txn | Append | Trim):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "not a Streams command")
        if isinstance(command, Txn) and any(
            not op.key.startswith(TOPICS) for op in (*command.success, *command.failure)
        ):
            # The service's own transactions write topic descriptions only: anything else
            # (a counter, a user key) is not this call's to write.
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "not a Streams transaction")
        _, outcome = await self._kv.write_keys(
            request, [request.key], command, context, never_forwarded
        )
        if isinstance(outcome, Invalid):
            await context.abort(grpc.StatusCode.NOT_FOUND, outcome.reason)
        if status_of_result(outcome) is not None or not isinstance(
            outcome, TxnResult | Appended | Trimmed
        ):
            await self._kv.expect(outcome, Appended, context)  # aborts with its status
        return streams_pb2.ApplyResponse(result=encode_forwarded_result(outcome))

    # ------------------------------------------------------------------ fetch

    async def Fetch(  # noqa: N802
        self,
        request: streams_pb2.FetchRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> streams_pb2.FetchResponse:
        topic = await self._topic(request.topic, context)
        if request.partition >= topic.partitions:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"topic {topic.name} has partitions 0..{topic.partitions - 1}",
            )
        if request.max_records > FETCH_RECORDS_MAX:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"a fetch returns at most {FETCH_RECORDS_MAX} records",
            )
        row = partition_row(topic.name.encode(), request.partition)
        consistency = (
            kv_pb2.CONSISTENCY_STALE
            if request.max_staleness_ms
            else kv_pb2.CONSISTENCY_LINEARIZABLE
        )
        deadline = time.monotonic() + request.max_wait_ms / 1000
        while True:
            # Watched before the read: a record appended after it wakes the wait below.
            wake = self._watch(row, request.offset) if request.max_wait_ms else None
            try:
                got = await self._kv.Get(
                    kv_pb2.GetRequest(
                        key=row, consistency=consistency, max_staleness_ms=request.max_staleness_ms
                    ),
                    context,
                )
                if not got.found:
                    self._topics.pop(topic.name, None)
                    await context.abort(grpc.StatusCode.NOT_FOUND, f"no topic {topic.name}")
                head = decode_head(got.kv.value)
                if request.offset < head.first:
                    await context.abort(
                        grpc.StatusCode.OUT_OF_RANGE,
                        f"offset {request.offset} is trimmed: the first retained is {head.first}",
                        trailing_metadata=(("kvstore-first-offset", str(head.first)),),
                    )
                if request.offset > head.next:
                    await context.abort(
                        grpc.StatusCode.OUT_OF_RANGE,
                        f"offset {request.offset} is past the partition's end ({head.next})",
                        trailing_metadata=(("kvstore-first-offset", str(head.first)),),
                    )
                left = deadline - time.monotonic()
                if request.offset < head.next or left <= 0:
                    break
                await self._appended(wake, left)
            finally:
                if wake is not None:
                    wake.close()
        response = streams_pb2.FetchResponse(
            next_offset=request.offset, first_offset=head.first, end_offset=head.next
        )
        if request.offset >= head.next:
            return response
        scan = kv_pb2.ScanRequest(
            start=record_key(row, request.offset),
            end=record_key(row, head.next),
            limit=request.max_records or FETCH_RECORDS_DEFAULT,
            consistency=consistency,
            max_staleness_ms=request.max_staleness_ms,
        )
        part = await self._kv.Scan(scan, context)
        for kv in part.kvs:
            appended_ms, record = decode_record(kv.value)
            response.records.add(
                partition=request.partition,
                offset=record_offset(row, kv.key),
                key=record.key,
                value=record.value,
                headers=[streams_pb2.Header(name=n, value=v) for n, v in record.headers],
                timestamp_ms=appended_ms,
            )
        if response.records:
            response.next_offset = response.records[-1].offset + 1
        return response

    async def Subscribe(  # noqa: N802
        self,
        request: streams_pb2.SubscribeRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[streams_pb2.FetchResponse]:
        offset = request.offset
        while True:
            fetch = streams_pb2.FetchRequest(
                topic=request.topic,
                partition=request.partition,
                offset=offset,
                max_records=request.max_records,
                max_wait_ms=SUBSCRIBE_WAIT_MS,
                max_staleness_ms=request.max_staleness_ms,
            )
            page = await self.Fetch(fetch, context)
            if page.records:
                offset = page.next_offset
                yield page

    def _watch(self, row: bytes, offset: int) -> _Wake | None:
        """A watch of the partition's records from ``offset`` on, from now (None: this
        node holds no replica of it, or serves no watches)."""
        if self._watches is None:
            return None
        span = KeySpan(record_key(row, offset), prefix_end(row))
        try:
            return _Wake(self._watches, self._watches.add(span, None, prev_kv=False))
        except WatchNotHostedError:
            return None

    async def _appended(self, wake: _Wake | None, limit_s: float) -> None:
        """Until the watch saw a change (or ``limit_s``); without one, a short pause."""
        if wake is None:
            await asyncio.sleep(min(_LONG_POLL_S, limit_s))
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.watch.wake.wait(), limit_s)

    # ------------------------------------------------------------------ retention

    def start(self) -> None:
        """Begin trimming, every ``RETENTION_CHECK_S``, the partitions whose shard this
        node leads, past their topic's retention."""
        self._retention = asyncio.create_task(self._retain_forever())

    async def close(self) -> None:
        task, self._retention = self._retention, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _retain_forever(self) -> None:
        context: Any = OwnCall()
        while True:
            await asyncio.sleep(RETENTION_CHECK_S)
            try:
                await self.retain(context, time.time() * 1000)
            except RefusedError as refused:
                self._log.info("retention_refused", code=refused.code.name, reason=refused.details)

    async def retain(self, context: grpc.aio.ServicerContext[Any, Any], now_ms: float) -> int:
        """Trim each led partition past its topic's retention: the records deleted."""
        deleted = 0
        for topic in (await self.ListTopics(streams_pb2.ListTopicsRequest(), context)).topics:
            if not topic.retention_ms and not topic.retention_bytes:
                continue
            for p in range(topic.partitions):
                row = partition_row(topic.name.encode(), p)
                if self._kv.leader_of(self._kv.locate(row).range_id) != self._kv.node_id:
                    continue
                cut = await self._retention_cut(topic, row, now_ms, context)
                if cut is not None:
                    trim = Trim(_NO_ID, row, cut)
                    deleted += (await self._propose(row, trim, Trimmed, context)).deleted
        return deleted

    async def _retention_cut(
        self,
        topic: streams_pb2.TopicConfig,
        row: bytes,
        now_ms: float,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> int | None:
        """The first offset to keep (None: nothing to trim): records older than the
        retention time go, then the oldest while the rest is over the retention bytes."""
        got = await self._kv.Get(kv_pb2.GetRequest(key=row), context)
        if not got.found:
            return None
        head = decode_head(got.kv.value)
        excess = head.retained_bytes - topic.retention_bytes if topic.retention_bytes else 0
        cut = head.first
        while cut < head.next:
            scan = kv_pb2.ScanRequest(
                start=record_key(row, cut), end=record_key(row, head.next), limit=1000
            )
            page = await self._kv.Scan(scan, context)
            for kv in page.kvs:
                appended_ms, _ = decode_record(kv.value)
                old = topic.retention_ms and appended_ms < now_ms - topic.retention_ms
                if not old and excess <= 0:
                    return cut if cut > head.first else None
                excess -= len(kv.value)
                cut = record_offset(row, kv.key) + 1
            if not page.more:
                break
        return cut if cut > head.first else None

    # ------------------------------------------------------------------ helpers

    async def _topic(
        self, name: str, context: grpc.aio.ServicerContext[Any, Any], *, fresh: bool = False
    ) -> streams_pb2.TopicConfig:
        await self._check_name(name, context)
        known = self._topics.get(name)
        if known is not None and not fresh and time.monotonic() < known[1] + _TOPIC_CACHE_S:
            return known[0]
        got = await self._kv.Get(kv_pb2.GetRequest(key=topic_key(name.encode())), context)
        if not got.found:
            self._topics.pop(name, None)
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no topic {name}")
        topic = streams_pb2.TopicConfig.FromString(got.kv.value)
        self._remember(topic)
        return topic

    def _remember(self, topic: streams_pb2.TopicConfig) -> None:
        self._topics[topic.name] = (topic, time.monotonic())

    async def _each(self, rows: list[bytes], propose: Callable[[bytes], Awaitable[R]]) -> list[R]:
        """``propose`` for each row, ``_CONCURRENT_PROPOSALS`` at a time (a shard's leader
        batches what arrives together into one log slot)."""
        results: list[R] = []
        for at in range(0, len(rows), _CONCURRENT_PROPOSALS):
            results += await asyncio.gather(
                *(propose(row) for row in rows[at : at + _CONCURRENT_PROPOSALS])
            )
        return results

    async def _check_name(self, name: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        if not valid_name(name.encode()):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"a topic name is 1..249 of [A-Za-z0-9._-], not {name!r}",
            )

    async def _propose(
        self,
        key: bytes,
        command: Txn | Append | Trim,
        kind: type[R],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> R:
        """``command`` at the shard holding ``key``: proposed here if this node leads it,
        else sent (``Apply``) to the node that does."""
        request = streams_pb2.ApplyRequest(key=key, command=encode_command(command))

        async def forward(node: int, timeout: float) -> Any:
            stub = streams_pb2_grpc.StreamsStub(self._kv.channel(node))
            answer = await stub.Apply(request, timeout=timeout, metadata=(FORWARDED,))
            return decode_forwarded_result(answer.result)

        _, outcome = await self._kv.write_keys(request, [key], command, context, forward)
        if isinstance(outcome, Invalid) and isinstance(command, Append):
            topic = key[len(PARTITIONS) :].rsplit(b"/", 1)[0].decode()
            self._topics.pop(topic, None)
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no such partition of {topic}")
        return await self._kv.expect(outcome, kind, context)


class _Wake:
    """A watch held while a fetch waits for a record."""

    def __init__(self, watches: Watches, watch: Watch) -> None:
        self._watches = watches
        self.watch = watch

    def close(self) -> None:
        self._watches.remove(self.watch.watcher.watch_id)


def _producer_client(producer_id: int, topic: str, partition: int) -> int:
    """The session-table client id of a producer's appends to one partition (each
    partition's appends are a session of their own; 63 bits, never 0)."""
    digest = hashlib.blake2b(
        b"%d/%s/%d" % (producer_id, topic.encode(), partition), digest_size=8
    ).digest()
    return (int.from_bytes(digest, "big") >> 1) or 1


def _after(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])
