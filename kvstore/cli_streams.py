"""``kvstore topic create|list|describe|delete``, ``kvstore produce``, ``kvstore consume``.

Rules:
- ``topic create NAME --partitions N [--retention-hours H] [--retention-mb M]``; ``topic
  list``; ``topic describe NAME`` (per partition: shard, leader, DC, first and next offset,
  bytes); ``topic delete NAME``. Tables for people, ``-o json`` one object per line.
- ``produce TOPIC [--key K] [--partition P] [VALUE]``: one record, or without VALUE one
  per stdin line (sent in batches of up to ``_STDIN_BATCH`` lines, in order); prints each
  record's partition and offset.
- ``consume TOPIC [--partition P] [--offset O] [--follow]``: the records of a partition
  (or of every partition, one after another) from the offset, one per line (JSON:
  ``partition``, ``offset``, ``key``, ``value``, ``timestamp_ms``); ``--follow`` keeps
  printing new ones until Ctrl-C. ``--group G [--name N]``: as a member of consumer group
  G (an ``EventProcessor``), the records of the partitions it owns, until Ctrl-C,
  checkpointing what it printed every half second.
- ``group describe G``: per topic and partition, the owner, how long ago it last reported,
  the checkpoint, the partition's next offset and the lag between them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, TypeVar

from kvstore import event_loop
from kvstore.cli_args import UserError, arg_bytes
from kvstore.cli_support import endpoint_list, show, table
from kvstore.client import AsyncClient, KvError
from kvstore.streams.client import Record, StreamCalls
from kvstore.streams.processor import (
    EventProcessor,
    describe,
    group_topics,
    member_heartbeats,
)

T = TypeVar("T")
_STDIN_BATCH = 500
_CHECKPOINT_S = 0.5
_LEAVE_S_MAX = 10.0  # after Ctrl-C, a group member exits within this long


def topic_create(args: argparse.Namespace) -> int:
    made = _run(
        args,
        lambda streams: streams.create_topic(
            args.name,
            args.partitions,
            retention_ms=round(args.retention_hours * 3_600_000),
            retention_bytes=args.retention_mb << 20,
        ),
    )
    row = {"topic": made.name, "partitions": made.partitions, "created": True}
    show(args, row, ["topic", "partitions", "created"])
    return 0


def topic_list(args: argparse.Namespace) -> int:
    topics = _run(args, lambda streams: streams.list_topics())
    columns = ["topic", "partitions", "retention_ms", "retention_bytes"]
    rows = [[t.name, t.partitions, t.retention_ms, t.retention_bytes] for t in topics]
    _rows(args, columns, rows)
    return 0


def topic_describe(args: argparse.Namespace) -> int:
    described = _run(args, lambda streams: streams.describe_topic(args.name))
    columns = ["partition", "shard", "leader", "dc", "first_offset", "next_offset", "bytes"]
    rows = [
        [
            p.partition,
            p.shard_id,
            p.leader_node_id or "?",
            p.leader_dc or "?",
            p.first_offset,
            p.next_offset,
            p.retained_bytes,
        ]
        for p in described.partitions
    ]
    _rows(args, columns, rows)
    return 0


def topic_delete(args: argparse.Namespace) -> int:
    deleted = _run(args, lambda streams: streams.delete_topic(args.name))
    show(args, {"topic": args.name, "records_deleted": deleted}, ["topic", "records_deleted"])
    return 0


def produce(args: argparse.Namespace) -> int:
    key = arg_bytes(args.key) if args.key is not None else None

    async def send(streams: StreamCalls) -> None:
        for values in _batches(args.value):
            records = [(key, v) if key is not None else v for v in values]
            appended = await streams.produce(args.topic, records, partition=args.partition)
            for part in appended:
                for offset in range(part.first_offset, part.first_offset + part.count):
                    row = {"partition": part.partition, "offset": offset}
                    if args.output == "json":
                        print(json.dumps(row), flush=True)
                    else:
                        print(f"partition {part.partition} offset {offset}", flush=True)

    _run(args, send)
    return 0


def consume(args: argparse.Namespace) -> int:
    if args.group is not None:
        return _consume_group(args)

    async def read(streams: StreamCalls) -> None:
        if args.partition is not None:
            partitions = [args.partition]
        else:
            partitions = list(range((await streams.describe_topic(args.topic)).topic.partitions))
        if args.follow and len(partitions) > 1:
            await asyncio.gather(*(_print_from(streams, args, p) for p in partitions))
            return
        for p in partitions:
            await _print_from(streams, args, p)

    with contextlib.suppress(KeyboardInterrupt):  # --follow ends with Ctrl-C
        _run(args, read)
    return 0


def _consume_group(args: argparse.Namespace) -> int:
    """A member of the consumer group: prints the records of the partitions it owns, and
    checkpoints the last printed of each every ``_CHECKPOINT_S`` (and once it stops)."""
    endpoints = endpoint_list(args)

    async def main() -> None:
        stopping = asyncio.Event()
        current: list[EventProcessor] = []

        def interrupted() -> None:
            # Ctrl-C: leave the group (claims released, last checkpoints written), but
            # within ``_LEAVE_S_MAX`` whatever the cluster does: the lease's end frees
            # the claims of a member that could not say goodbye.
            stopping.set()
            for processor in current:
                processor.stop()
            deadline = threading.Timer(_LEAVE_S_MAX, os._exit, (0,))
            deadline.daemon = True  # a process that exited in time does not wait for it
            deadline.start()

        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, interrupted)
        async with AsyncClient(endpoints, timeout_s=args.timeout) as client:
            printed: dict[int, Record] = {}

            async def on_event(record: Record) -> None:
                _print_record(args, record)
                printed[record.partition] = record

            while not stopping.is_set():  # again if its lease was lost (a long partition)
                processor = EventProcessor(
                    client,
                    args.topic,
                    args.group,
                    on_event,
                    name=args.name,
                    max_staleness_ms=args.max_staleness_ms,
                )
                current[:] = [processor]
                saving = asyncio.create_task(_checkpoint_often(processor, printed))
                try:
                    await processor.run()
                finally:
                    saving.cancel()
                    await asyncio.gather(saving, return_exceptions=True)

    with contextlib.suppress(KeyboardInterrupt):
        try:
            event_loop.run_in_cli_loop(main())
        except KvError as exc:
            raise UserError(f"{exc.code.name}: {exc.details}") from None
    return 0


async def _checkpoint_often(processor: EventProcessor, printed: dict[int, Record]) -> None:
    saved: dict[int, int] = {}
    while True:
        await asyncio.sleep(_CHECKPOINT_S)
        for partition, record in list(printed.items()):
            if saved.get(partition) != record.offset:
                with contextlib.suppress(KvError):
                    if await processor.checkpoint(record):
                        saved[partition] = record.offset


def group_describe(args: argparse.Namespace) -> int:
    rows = _with_client(args, lambda client: _group_rows(client, args.group))
    columns = ["topic", "partition", "owner", "heartbeat_s_ago", "checkpoint", "next", "lag"]
    _rows(args, columns, rows)
    return 0


async def _group_rows(client: AsyncClient, group: str) -> list[list[Any]]:
    streams = client.streams
    rows: list[list[Any]] = []
    for topic in await group_topics(client, group):
        heartbeats = await member_heartbeats(client, topic, group)
        described = await streams.describe_topic(topic)
        now_ms = time.time() * 1000
        for state in await describe(client, topic, group):
            end = described.partitions[state.partition]
            done = state.checkpoint if state.checkpoint is not None else end.first_offset
            beat = heartbeats.get(state.owner or "")
            rows.append(
                [
                    topic,
                    state.partition,
                    state.owner or "-",
                    f"{(now_ms - beat) / 1000:.1f}" if beat is not None else "-",
                    state.checkpoint if state.checkpoint is not None else "-",
                    end.next_offset,
                    max(end.next_offset - done, 0),
                ]
            )
    return rows


async def _print_from(streams: StreamCalls, args: argparse.Namespace, partition: int) -> None:
    records = streams.read(
        args.topic,
        partition,
        args.offset,
        follow=args.follow,
        max_staleness_ms=args.max_staleness_ms,
    )
    async for record in records:
        _print_record(args, record)


def _print_record(args: argparse.Namespace, record: Record) -> None:
    if args.output == "json":
        row = {
            "partition": record.partition,
            "offset": record.offset,
            "key": record.key.decode(errors="replace"),
            "value": record.value.decode(errors="replace"),
            "timestamp_ms": record.timestamp_ms,
        }
        print(json.dumps(row), flush=True)
    else:
        key = record.key.decode(errors="replace")
        value = record.value.decode(errors="replace")
        print(f"{record.partition}:{record.offset}\t{key}\t{value}", flush=True)


def _batches(value: str | None) -> Iterator[list[bytes]]:
    if value is not None:
        yield [arg_bytes(value)]
        return
    batch: list[bytes] = []
    lines = getattr(sys.stdin, "buffer", None)  # bytes, as typed
    if lines is None:
        raise UserError("stdin cannot be read as bytes here")
    for line in lines:
        batch.append(line.rstrip(b"\n"))
        if len(batch) >= _STDIN_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _rows(args: argparse.Namespace, columns: list[str], rows: Sequence[Sequence[Any]]) -> None:
    if args.output == "json":
        for row in rows:
            print(json.dumps(dict(zip(columns, row, strict=True))))
    else:
        table(columns, [list(row) for row in rows])


def _run(args: argparse.Namespace, call: Callable[[StreamCalls], Awaitable[T]]) -> T:
    return _with_client(args, lambda client: call(client.streams))


def _with_client(args: argparse.Namespace, call: Callable[[AsyncClient], Awaitable[T]]) -> T:
    endpoints = endpoint_list(args)  # outside the loop: with --dc it runs one of its own

    async def main() -> T:
        async with AsyncClient(endpoints, timeout_s=args.timeout) as client:
            return await call(client)

    try:
        return event_loop.run_in_cli_loop(main())
    except KvError as exc:
        raise UserError(f"{exc.code.name}: {exc.details}") from None
