"""The Streams service for the Python client: ``client.streams`` (see docs/streams.md).

A client is one idempotent producer: it picks a random producer id, numbers its produce
calls, and sends one at a time, so a call retried after a lost answer (the same id and
sequence) appends once, and a partition's records from this client stay in call order.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass

import grpc

from kvstore.any_endpoint import RETRIED, AnyEndpoint, stop_if_cancelled
from kvstore.v1 import streams_pb2, streams_pb2_grpc

Produced = bytes | str | tuple[bytes | str, bytes | str] | streams_pb2.ProducedRecord


@dataclass(frozen=True, slots=True)
class Record:
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    timestamp_ms: int


class StreamCalls(AnyEndpoint[streams_pb2_grpc.StreamsStub]):
    """The Streams service at any of ``endpoints`` (each routes to the partitions' leaders)."""

    def __init__(
        self,
        channel_for: Callable[[str], grpc.aio.Channel],
        endpoints: Sequence[str],
        timeout_s: float,
        error: Callable[[grpc.StatusCode, str], Exception],
    ) -> None:
        super().__init__(streams_pb2_grpc.StreamsStub, channel_for, endpoints, timeout_s, error)
        self.producer_id = random.SystemRandom().randrange(1, 1 << 63)
        self._sequence = 0
        self._producing = asyncio.Lock()  # one produce in flight: retries stay exactly-once

    async def create_topic(
        self, name: str, partitions: int, *, retention_ms: int = 0, retention_bytes: int = 0
    ) -> streams_pb2.TopicConfig:
        topic = streams_pb2.TopicConfig(
            name=name,
            partitions=partitions,
            retention_ms=retention_ms,
            retention_bytes=retention_bytes,
        )
        request = streams_pb2.CreateTopicRequest(topic=topic)
        answer: streams_pb2.CreateTopicResponse = await self.call(
            lambda stub, t: stub.CreateTopic(request, timeout=t)
        )
        return answer.topic

    async def delete_topic(self, name: str) -> int:
        """The number of records deleted with it."""
        request = streams_pb2.DeleteTopicRequest(name=name)
        answer: streams_pb2.DeleteTopicResponse = await self.call(
            lambda stub, t: stub.DeleteTopic(request, timeout=t)
        )
        return int(answer.records_deleted)

    async def list_topics(self) -> list[streams_pb2.TopicConfig]:
        answer: streams_pb2.ListTopicsResponse = await self.call(
            lambda stub, t: stub.ListTopics(streams_pb2.ListTopicsRequest(), timeout=t)
        )
        return list(answer.topics)

    async def describe_topic(self, name: str) -> streams_pb2.DescribeTopicResponse:
        request = streams_pb2.DescribeTopicRequest(name=name)
        answer: streams_pb2.DescribeTopicResponse = await self.call(
            lambda stub, t: stub.DescribeTopic(request, timeout=t)
        )
        return answer

    async def produce(
        self, topic: str, records: Iterable[Produced], *, partition: int | None = None
    ) -> list[streams_pb2.PartitionAppend]:
        """Append ``records`` (values, ``(key, value)`` pairs or ``ProducedRecord``s) to
        ``topic``: where each partition's records of this call start, and how many."""
        request = streams_pb2.ProduceRequest(topic=topic, producer_id=self.producer_id)
        for record in records:
            request.records.append(_produced(record, partition))
        async with self._producing:
            self._sequence += 1
            request.sequence = self._sequence
            answer: streams_pb2.ProduceResponse = await self.call(
                lambda stub, t: stub.Produce(request, timeout=t)
            )
        return list(answer.appended)

    async def fetch(
        self,
        topic: str,
        partition: int,
        offset: int,
        *,
        max_records: int = 0,
        max_wait_ms: int = 0,
        max_staleness_ms: int = 0,
    ) -> streams_pb2.FetchResponse:
        request = streams_pb2.FetchRequest(
            topic=topic,
            partition=partition,
            offset=offset,
            max_records=max_records,
            max_wait_ms=max_wait_ms,
            max_staleness_ms=max_staleness_ms,
        )
        answer: streams_pb2.FetchResponse = await self.call(
            lambda stub, t: stub.Fetch(request, timeout=t)
        )
        return answer

    def subscribe(
        self, topic: str, partition: int, offset: int = 0, *, max_staleness_ms: int = 0
    ) -> AsyncIterator[Record]:
        """The partition's records from ``offset`` on, then each new one as it is appended,
        until the caller stops iterating (one ``Subscribe`` stream, opened again where it
        stopped if a node ends it)."""
        return _subscribe_to(self, topic, partition, offset, max_staleness_ms)

    async def read(
        self,
        topic: str,
        partition: int,
        offset: int = 0,
        *,
        follow: bool = False,
        max_staleness_ms: int = 0,
    ) -> AsyncIterator[Record]:
        """The partition's records from ``offset`` on, in offset order; with ``follow``,
        new ones as they come (``subscribe``), until the caller stops iterating."""
        if follow:
            async for record in self.subscribe(
                topic, partition, offset, max_staleness_ms=max_staleness_ms
            ):
                yield record
            return
        while True:
            page = await self.fetch(
                topic,
                partition,
                offset,
                max_staleness_ms=max_staleness_ms,
            )
            for r in page.records:
                yield _record(r)
            offset = page.next_offset
            if offset >= page.end_offset:
                return


async def _subscribe_to(
    calls: StreamCalls,
    topic: str,
    partition: int,
    offset: int,
    max_staleness_ms: int,
) -> AsyncIterator[Record]:
    """``StreamCalls.subscribe``: one stream at a time, from the endpoint that answered
    last; a stream a node ends (it stopped, or cannot reach the leader) is opened again,
    at another endpoint, from the next offset."""
    endpoints = calls.endpoints
    at = 0
    while True:
        stub = calls.stub_at(endpoints[at % len(endpoints)])
        request = streams_pb2.SubscribeRequest(
            topic=topic, partition=partition, offset=offset, max_staleness_ms=max_staleness_ms
        )
        stream = stub.Subscribe(request)
        try:
            async for page in stream:
                for r in page.records:
                    offset = r.offset + 1
                    yield _record(r)
        except grpc.aio.AioRpcError as err:
            if err.code() not in RETRIED:
                raise calls.error(err.code(), err.details() or "") from None
            stop_if_cancelled()
            at += 1
            await asyncio.sleep(0.1)
        finally:
            stream.cancel()


def _record(r: streams_pb2.ConsumedRecord) -> Record:
    headers = tuple((h.name, h.value) for h in r.headers)
    return Record(r.partition, r.offset, r.key, r.value, headers, r.timestamp_ms)


def _produced(record: Produced, partition: int | None) -> streams_pb2.ProducedRecord:
    if isinstance(record, streams_pb2.ProducedRecord):
        out = streams_pb2.ProducedRecord()
        out.CopyFrom(record)
    elif isinstance(record, tuple):
        key, value = record
        out = streams_pb2.ProducedRecord(key=_bytes(key), value=_bytes(value))
    else:
        out = streams_pb2.ProducedRecord(value=_bytes(record))
    if partition is not None and not out.HasField("partition"):
        out.partition = partition
    return out


def _bytes(data: bytes | str) -> bytes:
    return data.encode() if isinstance(data, str) else data
