"""``kvstore bench --workload produce`` and ``--workload consume``: event streams' rates.

produce: ``--concurrency`` producers (each its own producer id, one call in flight) send
batches of ``--batch`` records of ``--value-size`` bytes to a new topic of ``--partitions``
partitions for ``--duration`` seconds; reported: records/s, MB/s, and the produce call's
latency p50/p99.

consume: ``--records`` records are produced first (as above, not timed); then one reader
per partition fetches them all (``--batch`` is not used: 1,000 a fetch), timed; then an
``EventProcessor`` of a new group starts from offset 0 and is timed until it has been
handed every record (the catch-up of a processor restarting that far behind).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from dataclasses import dataclass

import grpc

from kvstore import event_loop
from kvstore.channels import CHANNEL_OPTIONS
from kvstore.client import AsyncClient
from kvstore.streams.client import Record
from kvstore.streams.processor import EventProcessor
from kvstore.v1 import streams_pb2, streams_pb2_grpc

FETCH_RECORDS = 1_000


@dataclass
class ProduceResult:
    partitions: int
    batch: int
    value_size: int
    concurrency: int
    duration_s: float
    records: int
    calls: int
    p50_ms: float
    p99_ms: float

    def rows(self) -> list[tuple[str, str]]:
        rate = self.records / self.duration_s
        return [
            ("topic", f"{self.partitions} partitions; batches of {self.batch}"
             f" x {self.value_size} B"),
            ("producers", str(self.concurrency)),
            ("records", f"{self.records} in {self.duration_s:.1f} s: {rate:,.0f}/s"
             f" ({rate * self.value_size / 1e6:.1f} MB/s of values)"),
            ("produce call", f"{self.calls} calls, p50 {self.p50_ms:.1f} ms,"
             f" p99 {self.p99_ms:.1f} ms"),
        ]  # fmt: skip


@dataclass
class ConsumeResult:
    partitions: int
    records: int
    fetch_s: float
    catch_up_s: float

    def rows(self) -> list[tuple[str, str]]:
        return [
            ("topic", f"{self.partitions} partitions, {self.records} records"),
            ("fetch, one reader a partition", f"{self.fetch_s:.2f} s:"
             f" {self.records / self.fetch_s:,.0f} records/s"),
            ("a processor catching up from 0", f"{self.catch_up_s:.2f} s:"
             f" {self.records / self.catch_up_s:,.0f} records/s"),
        ]  # fmt: skip


def produce(
    endpoints: list[str],
    *,
    partitions: int,
    batch: int,
    value_size: int,
    concurrency: int,
    duration_s: float,
    progress: bool,
) -> ProduceResult:
    async def main() -> ProduceResult:
        topic = await _new_topic(endpoints, partitions)
        latencies: list[float] = []
        load = _Load(endpoints, topic, batch, value_size, concurrency, progress)
        records = await load.run(duration_s, 0, latencies)
        latencies.sort()
        return ProduceResult(
            partitions,
            batch,
            value_size,
            concurrency,
            duration_s,
            records,
            len(latencies),
            1000 * statistics.median(latencies),
            1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        )

    return event_loop.run_in_cli_loop(main())


def consume(
    endpoints: list[str],
    *,
    partitions: int,
    records: int,
    value_size: int,
    concurrency: int,
    progress: bool,
) -> ConsumeResult:
    async def main() -> ConsumeResult:
        topic = await _new_topic(endpoints, partitions)
        await _Load(endpoints, topic, 100, value_size, concurrency, progress).run(0.0, records, [])
        async with grpc.aio.insecure_channel(endpoints[0], options=CHANNEL_OPTIONS) as channel:
            stub = streams_pb2_grpc.StreamsStub(channel)
            started = time.perf_counter()
            counts = await asyncio.gather(*(_read_all(stub, topic, p) for p in range(partitions)))
            fetch_s = time.perf_counter() - started
        assert sum(counts) == records, (sum(counts), records)
        catch_up_s = await _catch_up(endpoints, topic, records)
        return ConsumeResult(partitions, records, fetch_s, catch_up_s)

    return event_loop.run_in_cli_loop(main())


async def _new_topic(endpoints: list[str], partitions: int) -> str:
    topic = f"bench-{random.randrange(1 << 32):08x}"
    async with AsyncClient(endpoints, timeout_s=60) as client:
        await client.streams.create_topic(topic, partitions)
    return topic


@dataclass
class _Load:
    endpoints: list[str]
    topic: str
    batch: int
    value_size: int
    concurrency: int
    progress: bool

    async def run(self, duration_s: float, records_max: int, latencies: list[float]) -> int:
        """Produce until ``duration_s`` passed (0: no limit) or ``records_max`` were sent
        (0: no limit): the records acknowledged; each call's seconds into ``latencies``."""
        return await _produce(self, duration_s, records_max, latencies)


async def _produce(load: _Load, duration_s: float, records_max: int, latencies: list[float]) -> int:
    endpoints, topic, batch = load.endpoints, load.topic, load.batch
    value_size, concurrency, progress = load.value_size, load.concurrency, load.progress
    sent = 0
    end = time.perf_counter() + duration_s if duration_s else float("inf")
    value = b"v" * value_size
    channels = [
        grpc.aio.insecure_channel(endpoints[i % len(endpoints)], options=CHANNEL_OPTIONS)
        for i in range(concurrency)
    ]

    async def producer(channel: grpc.aio.Channel) -> None:
        nonlocal sent
        stub = streams_pb2_grpc.StreamsStub(channel)
        producer_id = random.randrange(1, 1 << 63)
        sequence = 0
        while time.perf_counter() < end and (not records_max or sent < records_max):
            n = min(batch, records_max - sent) if records_max else batch
            sent += n
            sequence += 1
            request = streams_pb2.ProduceRequest(
                topic=topic,
                producer_id=producer_id,
                sequence=sequence,
                records=[
                    streams_pb2.ProducedRecord(key=b"%d" % random.randrange(1 << 30), value=value)
                    for _ in range(n)
                ],
            )
            began = time.perf_counter()
            await stub.Produce(request, timeout=30)
            latencies.append(time.perf_counter() - began)

    async def report() -> None:
        while True:
            await asyncio.sleep(2.0)
            print(f"  produced {sent} records", flush=True)

    reporter = asyncio.create_task(report()) if progress else None
    try:
        await asyncio.gather(*(producer(c) for c in channels))
    finally:
        if reporter is not None:
            reporter.cancel()
        for channel in channels:
            await channel.close()
    return sent


async def _read_all(stub: streams_pb2_grpc.StreamsStub, topic: str, partition: int) -> int:
    offset = count = 0
    while True:
        request = streams_pb2.FetchRequest(
            topic=topic, partition=partition, offset=offset, max_records=FETCH_RECORDS
        )
        page = await stub.Fetch(request, timeout=30)
        count += len(page.records)
        offset = page.next_offset
        if offset >= page.end_offset:
            return count


async def _catch_up(endpoints: list[str], topic: str, records: int) -> float:
    """Seconds for a processor of a new group to be handed ``records`` records."""
    async with AsyncClient(endpoints, timeout_s=60) as client:
        handed = 0
        done = asyncio.Event()

        async def on_event(_: Record) -> None:
            nonlocal handed
            handed += 1
            if handed >= records:
                done.set()

        processor = EventProcessor(
            client, topic, f"g{random.randrange(1 << 32):08x}", on_event, cycle_s=0.2
        )
        started = time.perf_counter()
        running = asyncio.create_task(processor.run())
        await done.wait()
        elapsed = time.perf_counter() - started
        processor.stop()
        await running
        return elapsed
