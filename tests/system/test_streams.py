"""Real processes: topics of partitions, produce and fetch through any node. A new topic's
partitions each start in a shard of their own; records get dense offsets per partition in
produce order, the same key always lands in one partition, and a producer's retried request
appends once; fetches (linearizable or from a nearby replica) return each partition's records
in offset order; bad requests get clear statuses; clients cannot write the streams' keys."""

from __future__ import annotations

import asyncio
import time
import zlib
from collections import defaultdict
from pathlib import Path

import grpc
import pytest

from kvstore import AsyncClient, KvError
from kvstore.channels import CHANNEL_OPTIONS
from kvstore.local_cluster import LocalCluster
from kvstore.v1 import streams_pb2 as pb
from kvstore.v1 import streams_pb2_grpc
from tests.system.test_local_cluster import free_base_port


async def refused(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call  # type: ignore[misc]
    return err.value.code()


async def scenario(endpoints: list[str]) -> None:
    async with AsyncClient(endpoints, timeout_s=20) as kv:
        await kv.put("ready", "1")
    async with grpc.aio.insecure_channel(endpoints[1], options=CHANNEL_OPTIONS) as channel:
        streams = streams_pb2_grpc.StreamsStub(channel)
        orders = pb.TopicConfig(name="orders", partitions=6)
        await streams.CreateTopic(pb.CreateTopicRequest(topic=orders), timeout=60)
        again = streams.CreateTopic(pb.CreateTopicRequest(topic=orders), timeout=10)
        assert await refused(again) == grpc.StatusCode.ALREADY_EXISTS
        described = await streams.DescribeTopic(pb.DescribeTopicRequest(name="orders"), timeout=10)
        assert len({p.shard_id for p in described.partitions}) == 6  # each its own shard
        assert [t.name for t in (await streams.ListTopics(pb.ListTopicsRequest())).topics] == [
            "orders"
        ]

        # Produce: keyed records, then the same request again (a retry): appended once.
        records = [pb.ProducedRecord(key=b"k%d" % (i % 10), value=b"v%d" % i) for i in range(60)]
        produce = pb.ProduceRequest(topic="orders", records=records, producer_id=7, sequence=1)
        first = await streams.Produce(produce, timeout=30)
        retried = await streams.Produce(produce, timeout=30)
        assert first == retried
        assert sum(a.count for a in first.appended) == 60
        assert all(a.first_offset == 0 for a in first.appended)
        second = await streams.Produce(
            pb.ProduceRequest(topic="orders", records=records, producer_id=7, sequence=2)
        )
        assert {a.partition: a.first_offset for a in second.appended} == {
            a.partition: a.count for a in first.appended
        }

        # Fetch every partition: dense offsets, produce order, each key in one partition.
        expected: dict[int, list[bytes]] = defaultdict(list)
        for record in [*records, *records]:
            expected[zlib.crc32(record.key) % 6].append(record.value)
        for p in range(6):
            got: list[bytes] = []
            offset = 0
            while True:
                fetch = pb.FetchRequest(topic="orders", partition=p, offset=offset, max_records=7)
                page = await streams.Fetch(fetch, timeout=10)
                assert [r.offset for r in page.records] == list(range(offset, page.next_offset))
                got += [r.value for r in page.records]
                offset = page.next_offset
                if offset == page.end_offset:
                    break
            assert got == expected[p]
            near = pb.FetchRequest(topic="orders", partition=p, max_staleness_ms=5_000)
            stale = await streams.Fetch(near, timeout=10)
            assert [r.value for r in stale.records] == got[: len(stale.records)]
        end = offset  # partition 5's
        waited = pb.FetchRequest(topic="orders", partition=5, offset=end, max_wait_ms=200)
        assert not (await streams.Fetch(waited, timeout=10)).records  # nothing new: waits, ends

        # Bad requests.
        def topic(name: str, partitions: int) -> pb.CreateTopicRequest:
            return pb.CreateTopicRequest(topic=pb.TopicConfig(name=name, partitions=partitions))

        def one(**record: object) -> pb.ProduceRequest:
            return pb.ProduceRequest(topic="orders", records=[pb.ProducedRecord(**record)])

        bad = [
            (streams.CreateTopic(topic("a/b", 1)), "INVALID_ARGUMENT"),
            (streams.CreateTopic(topic("x" * 250, 1)), "INVALID_ARGUMENT"),
            (streams.CreateTopic(topic("t", 0)), "INVALID_ARGUMENT"),
            (streams.CreateTopic(topic("t", 1025)), "INVALID_ARGUMENT"),
            (streams.Produce(pb.ProduceRequest(topic="nope", records=records)), "NOT_FOUND"),
            (streams.Produce(one(value=b"v", partition=6)), "INVALID_ARGUMENT"),
            (streams.Produce(one(value=b"v" * (1 << 20) + b"v")), "INVALID_ARGUMENT"),
            (streams.Fetch(pb.FetchRequest(topic="orders", partition=6)), "INVALID_ARGUMENT"),
            (
                streams.Fetch(pb.FetchRequest(topic="orders", partition=0, max_records=10_001)),
                "INVALID_ARGUMENT",
            ),
            (
                streams.Fetch(pb.FetchRequest(topic="orders", partition=5, offset=end + 1)),
                "OUT_OF_RANGE",
            ),
            (streams.Apply(pb.ApplyRequest(key=b"k", command=b"")), "PERMISSION_DENIED"),
        ]
        for call, code in bad:
            assert (await refused(call)).name == code
        await streams.CreateTopic(topic("x" * 249, 1), timeout=30)  # the longest name
        await streams.CreateTopic(topic("widest", 1024), timeout=120)  # the most partitions
        wide = await streams.DescribeTopic(pb.DescribeTopicRequest(name="widest"), timeout=60)
        assert [p.partition for p in wide.partitions] == list(range(1024))
        assert len({p.shard_id for p in wide.partitions}) == 12  # spread, not one each
        last = pb.ProduceRequest(topic="widest", records=[one(value=b"v").records[0]])
        last.records[0].partition = 1023
        assert (await streams.Produce(last)).appended[0].partition == 1023
        async with AsyncClient(endpoints, timeout_s=20) as kv:
            with pytest.raises(KvError) as kv_refused:
                await kv.put(b"\xff\xffs/orders/\x00\x00\x00\x00", "forged")
            assert kv_refused.value.code == grpc.StatusCode.INVALID_ARGUMENT

        # Subscribe: records appended after the stream opened arrive, in order.
        async with AsyncClient(endpoints, timeout_s=20) as kv:
            await kv.streams.create_topic("live", 1)
            stream = kv.streams.subscribe("live", 0, 0)
            first = asyncio.ensure_future(stream.__anext__())
            await kv.streams.produce("live", [b"a", b"b"])
            await kv.streams.produce("live", [b"c"])
            got_live = [await asyncio.wait_for(first, 10)]
            while len(got_live) < 3:
                got_live.append(await asyncio.wait_for(stream.__anext__(), 10))
            assert [(r.offset, r.value) for r in got_live] == [(0, b"a"), (1, b"b"), (2, b"c")]
            await stream.aclose()  # type: ignore[attr-defined]

        # Retention: by age (half a second) and by size (2,000 bytes a partition).
        aged = pb.TopicConfig(name="aged", partitions=1, retention_ms=500)
        sized = pb.TopicConfig(name="sized", partitions=1, retention_bytes=2_000)
        for config in (aged, sized):
            await streams.CreateTopic(pb.CreateTopicRequest(topic=config), timeout=30)
            batch = [pb.ProducedRecord(value=b"x" * 50) for _ in range(100)]
            await streams.Produce(pb.ProduceRequest(topic=config.name, records=batch))
        for name, kept in (("aged", lambda p: p.first_offset == 100), ("sized", None)):
            deadline = time.monotonic() + 60
            while True:
                d = await streams.DescribeTopic(pb.DescribeTopicRequest(name=name), timeout=10)
                (p,) = d.partitions
                if (kept(p) if kept else 0 < p.retained_bytes <= 2_000) and p.first_offset > 0:
                    break
                assert time.monotonic() < deadline, p
                await asyncio.sleep(0.2)
            assert p.next_offset == 100
            trimmed = pb.FetchRequest(topic=name, partition=0, offset=p.first_offset - 1)
            assert await refused(streams.Fetch(trimmed, timeout=10)) == grpc.StatusCode.OUT_OF_RANGE
            rest = await streams.Fetch(
                pb.FetchRequest(topic=name, partition=0, offset=p.first_offset)
            )
            assert [r.offset for r in rest.records] == list(range(p.first_offset, 100))

        # Delete: every record goes; the topic is gone.
        deleted = await streams.DeleteTopic(pb.DeleteTopicRequest(name="orders"), timeout=60)
        assert deleted.records_deleted == 120
        gone = streams.Fetch(pb.FetchRequest(topic="orders", partition=0), timeout=10)
        assert await refused(gone) == grpc.StatusCode.NOT_FOUND


def test_topics_produce_and_fetch(tmp_path: Path) -> None:
    local = LocalCluster(tmp_path / "data", base_port=free_base_port())
    local.start_all()
    try:
        local.wait_serving()  # it talks to one node in particular
        asyncio.run(scenario(local.endpoints))
    finally:
        local.stop_all()
